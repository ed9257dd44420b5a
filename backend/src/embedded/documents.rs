//! The embedded document store: `documents.db` in the data directory, one row per
//! document, keyed by order id and name.
//!
//! Documents are written by the handlers, several at a time, and each must be durable
//! before its ledger record says it was handled. A file per document (tried first) cost
//! two or three fsyncs each (file, folder, new folder's parent) that no two documents
//! could share; here concurrent writes go through one writer thread that commits them
//! together, so a handler batch shares one fsync, and a row is atomic on its own.

use std::path::Path;

use async_trait::async_trait;
use events_schema::OrderId;
use rusqlite::{Connection, OptionalExtension, params};

use super::sqlite::{self, Durability, GroupWriter, ReadPool};
use crate::ports::{Document, DocumentInfo, DocumentStore, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    order_id     TEXT NOT NULL,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    body         BLOB NOT NULL,
    PRIMARY KEY (order_id, name)
) WITHOUT ROWID;
";

/// How many queued documents one commit may take at most.
const MAX_GROUP: usize = 256;

struct Put {
    order_id: String,
    document: Document,
}

pub struct SqliteDocuments {
    writer: GroupWriter<Put, Result<(), StoreError>>,
    reads: ReadPool,
}

impl SqliteDocuments {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = sqlite::open_with_schema(path, Durability::Full, SCHEMA)
            .map_err(|e| StoreError::new("opening the document store", e))?;
        let writer = GroupWriter::spawn("document-writer", conn, MAX_GROUP, commit)
            .map_err(|e| StoreError::new("starting the document writer", e))?;
        Ok(Self {
            writer,
            reads: ReadPool::new(path.to_path_buf()),
        })
    }
}

fn commit(conn: &mut Connection, group: &[Put]) -> Vec<Result<(), StoreError>> {
    let written = (|| {
        let tx = conn.transaction()?;
        {
            // A retried handler rewrites its document with the same bytes.
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO documents (order_id, name, content_type, body)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for p in group {
                put.execute(params![
                    p.order_id,
                    p.document.name,
                    p.document.content_type,
                    p.document.body
                ])?;
            }
        }
        tx.commit()
    })();
    group
        .iter()
        .map(|_| {
            written
                .as_ref()
                .map(|_| ())
                .map_err(|e| StoreError::new("writing a document", e))
        })
        .collect()
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
        let put = Put {
            order_id: order_id.to_string(),
            document: document.clone(),
        };
        self.writer.submit(put).await.unwrap_or_else(|| {
            Err(StoreError::new(
                "writing a document",
                "the document writer has stopped",
            ))
        })
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
        self.reads
            .read("reading a document", move |conn| {
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
            .await
    }
}
