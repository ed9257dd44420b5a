//! The document store on an S3 bucket: each document is the object
//! `orders/{orderId}/{name}`. Encryption and versioning are the bucket's defaults (the CDK
//! app and the bootstrap set them), so a put is a plain `PutObject`. The intake's archive
//! of accepted messages is the objects `intake/<channel>/<requestId>.json`.

use async_trait::async_trait;
use aws_sdk_s3::{
    operation::{get_object::GetObjectError, head_object::HeadObjectError},
    presigning::PresigningConfig,
    primitives::ByteStream,
};
use events_schema::{Channel, OrderId, RequestId};

use super::dynamo::sdk_error;
use crate::ports::{
    Document, DocumentInfo, DocumentStore, IntakeArchive, StoreError, intake_archive_key,
};

pub struct S3Documents {
    client: aws_sdk_s3::Client,
    bucket: String,
}

fn prefix(order_id: &OrderId) -> String {
    format!("orders/{order_id}/")
}

impl S3Documents {
    pub fn new(client: aws_sdk_s3::Client, bucket: String) -> Self {
        Self { client, bucket }
    }

    /// The object at `key` with its content type, `None` if there is none.
    async fn object(
        &self,
        key: String,
        context: &'static str,
    ) -> Result<Option<(Option<String>, Vec<u8>)>, StoreError> {
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(err) => {
                return match err.into_service_error() {
                    GetObjectError::NoSuchKey(_) => Ok(None),
                    other => Err(sdk_error(context, other)),
                };
            }
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::new(context, e))?
            .into_bytes()
            .to_vec();
        Ok(Some((out.content_type, body)))
    }
}

#[async_trait]
impl DocumentStore for S3Documents {
    async fn put(&self, order_id: &OrderId, document: &Document) -> Result<(), StoreError> {
        if !Document::valid_name(&document.name) {
            return Err(StoreError::new(
                "writing a document",
                format!("invalid name {:?}", document.name),
            ));
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{}{}", prefix(order_id), document.name))
            .content_type(&document.content_type)
            .body(ByteStream::from(document.body.clone()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("writing a document", e))
    }

    async fn list(&self, order_id: &OrderId) -> Result<Vec<DocumentInfo>, StoreError> {
        let prefix = prefix(order_id);
        let mut docs = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| sdk_error("listing documents", e))?;
            for object in out.contents() {
                let Some(name) = object.key().and_then(|k| k.strip_prefix(&prefix)) else {
                    continue;
                };
                if Document::valid_name(name) {
                    docs.push(DocumentInfo {
                        name: name.to_owned(),
                        size: object
                            .size()
                            .and_then(|s| u64::try_from(s).ok())
                            .unwrap_or(0),
                    });
                }
            }
            match out.next_continuation_token {
                Some(next) if out.is_truncated == Some(true) => token = Some(next),
                _ => break,
            }
        }
        docs.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(docs)
    }

    async fn get(&self, order_id: &OrderId, name: &str) -> Result<Option<Document>, StoreError> {
        if !Document::valid_name(name) {
            return Ok(None);
        }
        let key = format!("{}{name}", prefix(order_id));
        Ok(self
            .object(key, "reading a document")
            .await?
            .map(|(content_type, body)| Document {
                name: name.to_owned(),
                content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
                body,
            }))
    }

    /// A presigned `GetObject` of the document, after a `HeadObject` that tells a missing
    /// document (the API then answers 404 itself instead of redirecting to S3's error).
    /// Presigning is local signing with the caller's credentials: the link works only
    /// while those credentials may `s3:GetObject` the key, and for `expires` at most.
    async fn link(
        &self,
        order_id: &OrderId,
        name: &str,
        expires: std::time::Duration,
    ) -> Result<Option<String>, StoreError> {
        if !Document::valid_name(name) {
            return Ok(None);
        }
        let key = format!("{}{name}", prefix(order_id));
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await;
        if let Err(err) = head {
            return match err.into_service_error() {
                HeadObjectError::NotFound(_) => Ok(None),
                other => Err(sdk_error("looking up a document", other)),
            };
        }
        let config = PresigningConfig::expires_in(expires)
            .map_err(|e| StoreError::new("presigning a document link", e))?;
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| sdk_error("presigning a document link", e))?;
        Ok(Some(presigned.uri().to_owned()))
    }
}

#[async_trait]
impl IntakeArchive for S3Documents {
    async fn archive(
        &self,
        channel: &Channel,
        request_id: &RequestId,
        message: &str,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(intake_archive_key(channel, request_id))
            .content_type("application/json")
            .body(ByteStream::from(message.as_bytes().to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error("archiving an intake message", e))
    }

    async fn archived(
        &self,
        channel: &Channel,
        request_id: &RequestId,
    ) -> Result<Option<String>, StoreError> {
        let key = intake_archive_key(channel, request_id);
        Ok(self
            .object(key, "reading an archived intake message")
            .await?
            .map(|(_, body)| String::from_utf8_lossy(&body).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use crate::ports::Document;

    #[test]
    fn names_are_plain_file_names() {
        assert!(Document::valid_name("invoice.json"));
        for bad in ["", ".hidden", "a/b", "../x", "a b"] {
            assert!(!Document::valid_name(bad), "{bad:?}");
        }
    }
}
