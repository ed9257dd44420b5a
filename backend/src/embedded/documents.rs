//! The embedded document store: one file per document under `<data>/documents/`, written
//! atomically (temporary file, fsync, rename) so a crash never leaves half a document.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use async_trait::async_trait;
use events_schema::OrderId;

use crate::ports::{Document, DocumentInfo, DocumentStore, StoreError};

pub struct FileDocuments {
    root: PathBuf,
}

impl FileDocuments {
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(root)
            .map_err(|e| StoreError::new("creating the document folder", e))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Order ids may be `.` or `..`: the `o-` prefix keeps every order in its own folder.
    fn folder(&self, order_id: &OrderId) -> PathBuf {
        self.root.join(format!("o-{order_id}"))
    }
}

async fn blocking<T: Send + 'static>(
    context: &'static str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| StoreError::new(context, e)),
        Err(e) => Err(StoreError::new(context, e)),
    }
}

#[async_trait]
impl DocumentStore for FileDocuments {
    async fn put(&self, order_id: &OrderId, document: &Document) -> Result<(), StoreError> {
        if !Document::valid_name(&document.name) {
            return Err(StoreError::new(
                "writing a document",
                format!("invalid name {:?}", document.name),
            ));
        }
        let folder = self.folder(order_id);
        let name = document.name.clone();
        let body = document.body.clone();
        blocking("writing a document", move || {
            std::fs::create_dir_all(&folder)?;
            let tmp = folder.join(format!(".{name}.tmp"));
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&body)?;
            file.sync_all()?;
            std::fs::rename(&tmp, folder.join(&name))?;
            std::fs::File::open(&folder)?.sync_all()
        })
        .await
    }

    async fn list(&self, order_id: &OrderId) -> Result<Vec<DocumentInfo>, StoreError> {
        let folder = self.folder(order_id);
        blocking("listing documents", move || {
            let entries = match std::fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut docs = Vec::new();
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if Document::valid_name(&name) {
                    docs.push(DocumentInfo {
                        size: entry.metadata()?.len(),
                        name,
                    });
                }
            }
            docs.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(docs)
        })
        .await
    }

    async fn get(&self, order_id: &OrderId, name: &str) -> Result<Option<Document>, StoreError> {
        if !Document::valid_name(name) {
            return Ok(None);
        }
        let path = self.folder(order_id).join(name);
        let name = name.to_owned();
        blocking("reading a document", move || match std::fs::read(&path) {
            Ok(body) => Ok(Some(Document {
                content_type: content_type(&name).into(),
                name,
                body,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".json") {
        "application/json"
    } else if name.ends_with(".txt") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}
