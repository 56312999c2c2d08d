//! The audit trail: one row per write (API, `passwd`, an import or a sync as a whole), with
//! when, who (the key's name, `cli`, `sync` or `anonymous`), what, which customer and which
//! fields changed. Names only: a password value never reaches it, and neither does any other
//! value. Rows older than `audit_days` are pruned as new ones are written.

use rusqlite::Connection;

use crate::config::Retention;

/// Who wrote from the command line.
pub const CLI: &str = "cli";

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Update,
    Delete,
    /// The customer changed their own password (proving the current one).
    Password,
    /// An owner set a password (write key or `clientele passwd`), or a reset token did.
    PasswordReset,
    /// A password reset was started: a one-time token was made (never recorded).
    PasswordResetRequest,
    Import,
    Sync,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Add => "add",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Password => "password",
            Action::PasswordReset => "password-reset",
            Action::PasswordResetRequest => "password-reset-request",
            Action::Import => "import",
            Action::Sync => "sync",
        }
    }
}

/// Records one write; call it inside the write's transaction, so both commit or neither.
/// Prunes what `retention` no longer keeps on the way: audit rows, and the changes feed's
/// deletions.
pub fn record(
    conn: &Connection,
    actor: &str,
    action: Action,
    customer: Option<i64>,
    fields: &[&str],
    detail: &str,
    retention: Retention,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (actor, action, customer, fields, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(rusqlite::params![
        actor,
        action.as_str(),
        customer,
        fields.join(", "),
        detail
    ])?;
    conn.prepare_cached("DELETE FROM audit WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?1)")?
        .execute([format!("-{} days", retention.audit_days)])?;
    crate::customer::prune_tombstones(conn, retention.changes_days)?;
    Ok(())
}

/// One row of the trail, as `clientele audit` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub customer: Option<i64>,
    pub fields: String,
    pub detail: String,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}  {}  {}", self.at, self.actor, self.action)?;
        if let Some(customer) = self.customer {
            write!(f, "  customer {customer}")?;
        }
        if !self.fields.is_empty() {
            write!(f, "  fields: {}", self.fields)?;
        }
        if !self.detail.is_empty() {
            write!(f, "  {}", self.detail)?;
        }
        Ok(())
    }
}

/// The newest `limit` rows, oldest first, of one customer and/or since a date or time
/// (`2026-11-01`, or an ISO time), for `clientele audit`.
pub fn list(
    conn: &Connection,
    customer: Option<i64>,
    since: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<Entry>> {
    let mut statement = conn.prepare(
        "SELECT at, actor, action, customer, fields, detail FROM (
             SELECT * FROM audit
             WHERE (?1 IS NULL OR customer = ?1) AND (?2 IS NULL OR at >= ?2)
             ORDER BY id DESC LIMIT ?3
         ) ORDER BY id",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = statement.query_map(rusqlite::params![customer, since, limit], |row| {
        Ok(Entry {
            at: row.get(0)?,
            actor: row.get(1)?,
            action: row.get(2)?,
            customer: row.get(3)?,
            fields: row.get(4)?,
            detail: row.get(5)?,
        })
    })?;
    rows.collect()
}
