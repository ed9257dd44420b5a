//! The embedded document store: the `documents` table, one row per document, keyed by
//! order id and name, written by the one writer.
//!
//! Documents are written by the handlers, several at a time, and each must be durable
//! before its ledger record says it was handled. A file per document (tried first) cost
//! two or three fsyncs each that no two documents could share; as rows, a handler batch's
//! documents share the writer's commits, and a row is atomic on its own.
//!
//! The intake's archive of accepted messages shares the table: its rows are keyed by the
//! folder `intake/<channel>` (no order id has a `/`) and `<requestId>.json`, so that
//! together they spell [`intake_archive_key`].

use async_trait::async_trait;
use events_schema::{Channel, OrderId, RequestId};
use rusqlite::{OptionalExtension, params};

use super::{sqlite::ReadPool, writer::Writer};
use crate::ports::{
    Document, DocumentInfo, DocumentStore, IntakeArchive, StoreError, intake_archive_key,
};

pub struct SqliteDocuments {
    writer: Writer,
    reads: ReadPool,
}

impl SqliteDocuments {
    pub(super) fn new(writer: Writer, reads: ReadPool) -> Self {
        Self { writer, reads }
    }
}

#[async_trait]
impl DocumentStore for SqliteDocuments {
    async fn put(&self, order_id: &OrderId, document: &Document) -> Result<(), StoreError> {
        if !Document::valid_name(&document.name) {
            return Err(StoreError::new(
                "writing a document",
                format!("invalid name {:?}", document.name),
            ));
        }
        let (order_id, document) = (order_id.to_string(), document.clone());
        self.writer
            .write_statement("writing a document", move |conn| {
                // A retried handler rewrites its document with the same bytes.
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO documents (order_id, name, content_type, body)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    order_id,
                    document.name,
                    document.content_type,
                    document.body
                ])
                .map(|_| ())
            })
            .await
    }

    async fn list(&self, order_id: &OrderId) -> Result<Vec<DocumentInfo>, StoreError> {
        let id = order_id.to_string();
        self.reads
            .read("listing documents", move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT name, length(body) FROM documents WHERE order_id = ?1 ORDER BY name",
                )?;
                let rows = stmt.query_map([&id], |r| {
                    Ok(DocumentInfo {
                        name: r.get(0)?,
                        size: r.get(1)?,
                    })
                })?;
                rows.collect()
            })
            .await
    }

    async fn get(&self, order_id: &OrderId, name: &str) -> Result<Option<Document>, StoreError> {
        let (id, name) = (order_id.to_string(), name.to_owned());
        self.reads.read_now("reading a document", move |conn| {
            conn.prepare_cached(
                "SELECT content_type, body FROM documents WHERE order_id = ?1 AND name = ?2",
            )?
            .query_row([&id, &name], |r| {
                Ok(Document {
                    content_type: r.get(0)?,
                    body: r.get(1)?,
                    name: name.clone(),
                })
            })
            .optional()
        })
    }

    /// The rows are only reachable through this process: the API serves them.
    async fn link(
        &self,
        _: &OrderId,
        _: &str,
        _: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}

/// The folder and the name of an archived intake message's row.
fn intake_row(channel: &Channel, request_id: &RequestId) -> (String, String) {
    let key = intake_archive_key(channel, request_id);
    match key.rsplit_once('/') {
        Some((folder, name)) => (folder.to_owned(), name.to_owned()),
        None => (String::new(), key),
    }
}

#[async_trait]
impl IntakeArchive for SqliteDocuments {
    async fn archive(
        &self,
        channel: &Channel,
        request_id: &RequestId,
        message: &str,
    ) -> Result<(), StoreError> {
        let (folder, name) = intake_row(channel, request_id);
        let body = message.as_bytes().to_vec();
        self.writer
            .write_statement("archiving an intake message", move |conn| {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO documents (order_id, name, content_type, body)
                     VALUES (?1, ?2, 'application/json', ?3)",
                )?
                .execute(params![folder, name, body])
                .map(|_| ())
            })
            .await
    }

    async fn archived(
        &self,
        channel: &Channel,
        request_id: &RequestId,
    ) -> Result<Option<String>, StoreError> {
        let (folder, name) = intake_row(channel, request_id);
        let body: Option<Vec<u8>> =
            self.reads
                .read_now("reading an archived intake message", move |conn| {
                    conn.prepare_cached(
                        "SELECT body FROM documents WHERE order_id = ?1 AND name = ?2",
                    )?
                    .query_row([&folder, &name], |r| r.get(0))
                    .optional()
                })?;
        Ok(body.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}
