//! The `idempotency` table's upkeep at start: expired records go, and a database of
//! layout 1 (keys before namespaces) has its keys moved into their namespaces once.

use chrono::Utc;
use rusqlite::{Connection, params};
use uuid::Uuid;

use super::sqlite::micros;
use crate::{IdempotencyKey, LedgerKey};

/// Drops idempotency records past their expiry (at start).
pub(super) fn expire(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM idempotency WHERE expires_at < ?1",
        [micros(Utc::now())],
    )
    .map(|_| ())
}

/// Moves the keys of layout 1 into their namespaces (see [`crate::ledger_key`]); the caller
/// runs it once, in the transaction that marks the database as layout 2. Without it a
/// handler's record (kept a year) would no longer be found, and a client's record planted
/// under a handler's spelling would still block that handler: both are moved where they
/// belong. A client's key that the API would now refuse (say, with a `/`) can never be sent
/// again, so its record goes.
pub(super) fn namespace_legacy_keys(conn: &Connection) -> rusqlite::Result<Namespaced> {
    conn.execute_batch(
        "CREATE TEMP TABLE legacy_keys AS SELECT key, fingerprint FROM main.idempotency",
    )?;
    let mut done = Namespaced::default();
    // Refused keys go first: one of them may be spelled like another's new key.
    for pass in [Pass::Drop, Pass::Move] {
        let mut rows = conn.prepare("SELECT key, fingerprint FROM legacy_keys")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let fingerprint: String = row.get(1)?;
            match (pass, namespaced(&key, &fingerprint)) {
                (Pass::Drop, None) => {
                    conn.execute("DELETE FROM main.idempotency WHERE key = ?1", [&key])?;
                    done.dropped += 1;
                }
                (Pass::Move, Some(new)) => {
                    conn.execute(
                        "UPDATE OR REPLACE main.idempotency SET key = ?2 WHERE key = ?1",
                        params![key, new.as_str()],
                    )?;
                    done.moved += 1;
                }
                _ => {}
            }
        }
    }
    conn.execute_batch("DROP TABLE temp.legacy_keys")?;
    Ok(done)
}

#[derive(Clone, Copy)]
enum Pass {
    Drop,
    Move,
}

/// How many records [`namespace_legacy_keys`] moved and dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Namespaced {
    pub(super) moved: usize,
    pub(super) dropped: usize,
}

/// A key of layout 1 in its namespace: a handler wrote `handled:<handler>:<eventId>` with
/// the event id as the fingerprint (a client's fingerprint is a SHA-256, never a UUID);
/// any other key is a client's, anonymous because the embedded service has no
/// authenticated callers.
fn namespaced(key: &str, fingerprint: &str) -> Option<LedgerKey> {
    if let Some(handler) = key
        .strip_prefix("handled:")
        .and_then(|rest| rest.strip_suffix(fingerprint))
        .and_then(|rest| rest.strip_suffix(':'))
        && let Ok(event_id) = Uuid::parse_str(fingerprint)
    {
        return Some(LedgerKey::handler(handler, event_id));
    }
    IdempotencyKey::parse(key)
        .ok()
        .map(|key| LedgerKey::api(None, &key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = "0193a0b4-7c5e-7d2a-9f1e-3b4c5d6e7f80";

    fn table() -> Connection {
        let conn = Connection::open_in_memory().expect("opens");
        conn.execute_batch(
            "CREATE TABLE idempotency (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
             response TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID",
        )
        .expect("table");
        conn
    }

    fn insert(conn: &Connection, key: &str, fingerprint: &str) {
        conn.execute(
            "INSERT INTO idempotency VALUES (?1, ?2, ?3, 0)",
            params![key, fingerprint, format!("response of {key}")],
        )
        .expect("insert");
    }

    fn rows(conn: &Connection) -> Vec<(String, String)> {
        conn.prepare("SELECT key, response FROM idempotency ORDER BY key")
            .expect("select")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[test]
    fn layout_1_keys_move_into_their_namespaces() {
        let conn = table();
        let client_fp = "a".repeat(64);
        insert(&conn, &format!("handled:received:{EVENT}"), EVENT);
        insert(&conn, "key-C-k1", &client_fp);
        // A client's record planted under a handler's spelling, old and new.
        insert(&conn, &format!("handled:completed:{EVENT}"), &client_fp);
        insert(&conn, &format!("handler/canceled/{EVENT}"), &client_fp);
        insert(&conn, "with space", &client_fp);

        let done = namespace_legacy_keys(&conn).expect("migrates");

        assert_eq!(
            done,
            Namespaced {
                moved: 3,
                dropped: 2
            }
        );
        let event = Uuid::parse_str(EVENT).expect("uuid");
        let key = |raw: &str| IdempotencyKey::parse(raw).expect("key");
        let mut expected = vec![
            (
                LedgerKey::handler("received", event).to_string(),
                format!("response of handled:received:{EVENT}"),
            ),
            (
                LedgerKey::api(None, &key("key-C-k1")).to_string(),
                "response of key-C-k1".to_owned(),
            ),
            (
                LedgerKey::api(None, &key(&format!("handled:completed:{EVENT}"))).to_string(),
                format!("response of handled:completed:{EVENT}"),
            ),
        ];
        expected.sort();
        assert_eq!(rows(&conn), expected);
    }
}
