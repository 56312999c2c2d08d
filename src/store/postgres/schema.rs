//! The PostgreSQL schema: versioned migrations (append only), run at start-up under an
//! advisory lock so that nodes starting together do not race, after checking that the
//! database is clientele's (or empty); then the one-time hashing of legacy plain-text
//! passwords, as on SQLite.
//!
//! Same tables, columns and rules as the SQLite schema (`store/sqlite/mod.rs`), with what
//! PostgreSQL needs to give the same answers:
//! - the camelCase columns are quoted, so that they keep their wire names;
//! - texts are `COLLATE "C"`: they compare and sort byte by byte, as SQLite's do, and
//!   `lower()` folds ASCII letters only, which is what `email` matching (SQLite's NOCASE)
//!   asks for;
//! - times are the same ISO texts (`clientele_utc_ms()`, `clientele_utc_s()`);
//! - change numbers are taken by triggers from the single row of `change_log`, whose row
//!   lock, held to the commit, makes concurrent writers take them in commit order, so a
//!   changes poller never misses one;
//! - a statement-level trigger on each table a cache depends on notifies
//!   `clientele_changed` (see [`super::watch`]);
//! - `clientele_meta` marks the database as clientele's, with its schema version;
//! - `login_failure` holds the login limits shared by every node ([`super::limits`]).

use postgres::Client;

use super::Refusal;
use crate::auth::{self, PasswordHasher, Secret};
use crate::store::OpenReport;

/// What `clientele_meta.application` says in a clientele database.
pub const APPLICATION: &str = "clientele";

/// The session-level advisory lock migrations run under ("CltSchem").
const MIGRATION_LOCK: i64 = 0x436C_7453_6368_656D;

/// The stored passwords that are neither Argon2 nor bcrypt (plain text from the old system),
/// as on SQLite: one text for the partial index and the query.
macro_rules! legacy_password {
    () => {
        "password_hash IS NOT NULL AND substr(password_hash, 1, 7) <> '$argon2' \
         AND substr(password_hash, 1, 4) NOT IN ('$2a$', '$2b$', '$2y$')"
    };
}

/// Start-up's query for legacy passwords, through the partial index (empty once hashed).
pub const LEGACY_PASSWORDS_QUERY: &str = concat!(
    "SELECT clcleunik, password_hash FROM customer WHERE ",
    legacy_password!()
);

/// The schema, one entry per version; `clientele_meta.schema_version` records how many
/// have run. Append only: a released migration is never edited.
pub const MIGRATIONS: &[&str] = &[
    // 1: everything SQLite's twelve migrations built, at once.
    concat!(
        r#"
CREATE TABLE clientele_meta (
    id integer PRIMARY KEY CHECK (id = 1),
    application text NOT NULL,
    schema_version integer NOT NULL
);
INSERT INTO clientele_meta (id, application, schema_version) VALUES (1, 'clientele', 0);

-- Now (shifted), as the tables store times: UTC, to the millisecond or to the second.
CREATE FUNCTION clientele_utc_ms(shift interval DEFAULT interval '0') RETURNS text
    LANGUAGE sql VOLATILE AS $$
    SELECT to_char((clock_timestamp() AT TIME ZONE 'UTC') + shift,
                   'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;
CREATE FUNCTION clientele_utc_s(shift interval DEFAULT interval '0') RETURNS text
    LANGUAGE sql VOLATILE AS $$
    SELECT to_char((clock_timestamp() AT TIME ZONE 'UTC') + shift, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

-- Customers. Column names are the wire names; `password_hash` holds an Argon2id (or legacy
-- bcrypt) PHC string, or NULL for a customer who cannot log in.
CREATE TABLE customer (
    clcleunik bigint PRIMARY KEY CHECK (clcleunik >= 1),
    "customerNumber" text COLLATE "C" NOT NULL DEFAULT '',
    "groupePrice" text COLLATE "C" NOT NULL DEFAULT '',
    login text COLLATE "C" NOT NULL DEFAULT '',
    "lastName" text COLLATE "C" NOT NULL DEFAULT '',
    "firstName" text COLLATE "C" NOT NULL DEFAULT '',
    address text COLLATE "C" NOT NULL DEFAULT '',
    zipcode text COLLATE "C" NOT NULL DEFAULT '',
    city text COLLATE "C" NOT NULL DEFAULT '',
    country text COLLATE "C" NOT NULL DEFAULT '',
    phone text COLLATE "C" NOT NULL DEFAULT '',
    cellphone text COLLATE "C" NOT NULL DEFAULT '',
    email text COLLATE "C" NOT NULL DEFAULT '',
    denomination text COLLATE "C" NOT NULL DEFAULT '',
    "tvaNumber" text COLLATE "C" NOT NULL DEFAULT '',
    "addedDate" text COLLATE "C" NOT NULL DEFAULT '',
    "addHour" text COLLATE "C" NOT NULL DEFAULT '',
    language text COLLATE "C" NOT NULL DEFAULT '',
    "showPrice" boolean NOT NULL DEFAULT false,
    "webRemise" double precision NOT NULL DEFAULT 0,
    megawinapp_login text COLLATE "C" NOT NULL DEFAULT '',
    notification_accepted boolean NOT NULL DEFAULT false,
    password_hash text COLLATE "C",
    updated_at text COLLATE "C" NOT NULL DEFAULT clientele_utc_ms(),
    change_seq bigint NOT NULL DEFAULT 0
);
-- `email` is matched ignoring ASCII case: lower() of a "C" text folds ASCII only.
CREATE INDEX customer_email ON customer (lower(email));
CREATE INDEX customer_login ON customer (login);
CREATE INDEX customer_change ON customer (change_seq);
CREATE INDEX customer_legacy_password ON customer (clcleunik) WHERE "#,
        legacy_password!(),
        r#";

-- The changes feed. Every insert, change of a sent field (a password alone is not one) and
-- delete takes the next number from the one row of `change_log`, by trigger, so every writer
-- feeds it. The row stays locked by that transaction until it ends, so writers that change
-- customers take their numbers one after the other, in commit order: a poller that reads
-- up to number N has seen every change numbered N or less. Deletions leave a tombstone.
CREATE TABLE change_log (
    id integer PRIMARY KEY CHECK (id = 1),
    seq bigint NOT NULL,
    pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO change_log (id, seq) VALUES (1, 0);
CREATE TABLE tombstone (
    seq bigint PRIMARY KEY,
    clcleunik bigint NOT NULL,
    deleted_at text COLLATE "C" NOT NULL DEFAULT clientele_utc_ms()
);
CREATE INDEX tombstone_deleted_at ON tombstone (deleted_at);

-- The trigger functions find clientele's tables whatever the search_path of the program
-- writing (it is the one they were created with).
CREATE FUNCTION clientele_next_change() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    UPDATE change_log SET seq = seq + 1 WHERE id = 1 RETURNING seq
$$;
CREATE FUNCTION clientele_customer_numbered() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    NEW.change_seq := clientele_next_change();
    RETURN NEW;
END
$$;
CREATE TRIGGER customer_added BEFORE INSERT ON customer
    FOR EACH ROW EXECUTE FUNCTION clientele_customer_numbered();
CREATE TRIGGER customer_changed BEFORE UPDATE ON customer FOR EACH ROW
    WHEN ((OLD.clcleunik, OLD."customerNumber", OLD."groupePrice", OLD.login, OLD."lastName",
           OLD."firstName", OLD.address, OLD.zipcode, OLD.city, OLD.country, OLD.phone,
           OLD.cellphone, OLD.email, OLD.denomination, OLD."tvaNumber", OLD."addedDate",
           OLD."addHour", OLD.language, OLD."showPrice", OLD."webRemise",
           OLD.megawinapp_login, OLD.notification_accepted)
          IS DISTINCT FROM
          (NEW.clcleunik, NEW."customerNumber", NEW."groupePrice", NEW.login, NEW."lastName",
           NEW."firstName", NEW.address, NEW.zipcode, NEW.city, NEW.country, NEW.phone,
           NEW.cellphone, NEW.email, NEW.denomination, NEW."tvaNumber", NEW."addedDate",
           NEW."addHour", NEW.language, NEW."showPrice", NEW."webRemise",
           NEW.megawinapp_login, NEW.notification_accepted))
    EXECUTE FUNCTION clientele_customer_numbered();

-- Mirroring the old API: a keyed digest of each password the last sync brought.
CREATE TABLE upstream_password (
    clcleunik bigint PRIMARY KEY,
    digest bytea NOT NULL
);

-- The demo customers of a database seeded with them, until the shop's own arrive.
CREATE TABLE demo_customer (clcleunik bigint PRIMARY KEY);

-- Password-reset tokens, stored only as SHA-256 digests.
CREATE TABLE reset_token (
    digest bytea PRIMARY KEY CHECK (length(digest) = 32),
    customer bigint NOT NULL,
    expires text COLLATE "C" NOT NULL
);
CREATE INDEX reset_token_customer ON reset_token (customer);

-- Customer sessions, stored only as SHA-256 digests of their tokens.
CREATE TABLE session (
    digest bytea PRIMARY KEY CHECK (length(digest) = 32),
    customer bigint NOT NULL,
    created text COLLATE "C" NOT NULL DEFAULT clientele_utc_ms(),
    expires text COLLATE "C" NOT NULL
);
CREATE INDEX session_customer ON session (customer);
CREATE INDEX session_expires ON session (expires);

-- A deleted customer leaves a tombstone and takes with them their mirrored password, demo
-- mark, reset tokens and sessions.
CREATE FUNCTION clientele_customer_deleted() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO tombstone (seq, clcleunik) VALUES (clientele_next_change(), OLD.clcleunik);
    DELETE FROM upstream_password WHERE clcleunik = OLD.clcleunik;
    DELETE FROM demo_customer WHERE clcleunik = OLD.clcleunik;
    DELETE FROM reset_token WHERE customer = OLD.clcleunik;
    DELETE FROM session WHERE customer = OLD.clcleunik;
    RETURN NULL;
END
$$;
CREATE TRIGGER customer_deleted AFTER DELETE ON customer
    FOR EACH ROW EXECUTE FUNCTION clientele_customer_deleted();

-- A new password (from the API, `clientele passwd`, an import or a sync: whoever writes
-- it) ends the customer's sessions and reset tokens and forgets the mirrored one; any
-- change adopts a demo customer as the shop's own.
CREATE FUNCTION clientele_customer_updated() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.password_hash IS DISTINCT FROM NEW.password_hash THEN
        DELETE FROM upstream_password WHERE clcleunik = NEW.clcleunik;
        DELETE FROM reset_token WHERE customer = NEW.clcleunik;
        DELETE FROM session WHERE customer = NEW.clcleunik;
    END IF;
    DELETE FROM demo_customer WHERE clcleunik = NEW.clcleunik;
    RETURN NULL;
END
$$;
CREATE TRIGGER customer_updated AFTER UPDATE ON customer
    FOR EACH ROW EXECUTE FUNCTION clientele_customer_updated();

-- The largest id ever given, so that a registration never gets a deleted customer's id.
CREATE TABLE customer_id_high (id bigint NOT NULL);
CREATE UNIQUE INDEX customer_id_high_one_row ON customer_id_high ((true));
INSERT INTO customer_id_high (id) VALUES (0);
CREATE FUNCTION clientele_customer_id_high() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customer_id_high SET id = NEW.clcleunik WHERE id < NEW.clcleunik;
    RETURN NULL;
END
$$;
CREATE TRIGGER customer_id_high_insert AFTER INSERT ON customer
    FOR EACH ROW EXECUTE FUNCTION clientele_customer_id_high();

-- API keys, stored only as SHA-256 digests.
CREATE TABLE api_key (
    name text COLLATE "C" PRIMARY KEY,
    digest bytea NOT NULL UNIQUE CHECK (length(digest) = 32),
    created_at text COLLATE "C" NOT NULL DEFAULT clientele_utc_s(),
    scope text NOT NULL DEFAULT 'read' CHECK (scope IN ('read', 'write', 'public')),
    forwards_client_address boolean NOT NULL DEFAULT false
);

-- The audit trail of every write.
CREATE TABLE audit (
    id bigserial PRIMARY KEY,
    at text COLLATE "C" NOT NULL DEFAULT clientele_utc_ms(),
    actor text COLLATE "C" NOT NULL,
    action text COLLATE "C" NOT NULL,
    customer bigint,
    fields text COLLATE "C" NOT NULL DEFAULT '',
    detail text COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_customer ON audit (customer, at);
CREATE INDEX audit_sync ON audit (at) WHERE action = 'sync' AND actor = 'sync';

-- Failed logins, shared by every node: the SHA-256 digest of each subject (an account, an
-- address) an attempt counted against, until it is refunded or falls out of the window.
CREATE TABLE login_failure (
    subject bytea NOT NULL CHECK (length(subject) = 32),
    attempt bigint NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (subject, attempt)
);
CREATE INDEX login_failure_attempt ON login_failure (attempt);
CREATE INDEX login_failure_at ON login_failure (at);
CREATE SEQUENCE login_attempt AS bigint;

-- Every node's caches hear of every commit that changes what they keep.
CREATE FUNCTION clientele_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('clientele_changed', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER customer_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON customer
    FOR EACH STATEMENT EXECUTE FUNCTION clientele_notify();
CREATE TRIGGER api_key_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_key
    FOR EACH STATEMENT EXECUTE FUNCTION clientele_notify();
CREATE TRIGGER session_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON session
    FOR EACH STATEMENT EXECUTE FUNCTION clientele_notify();
CREATE TRIGGER reset_token_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON reset_token
    FOR EACH STATEMENT EXECUTE FUNCTION clientele_notify();
CREATE TRIGGER demo_customer_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON demo_customer FOR EACH STATEMENT EXECUTE FUNCTION clientele_notify();
"#
    ),
    // 2: writing many customers in one statement (an import, a sync) at a cost linear in
    // their number.
    // - Change numbers and the id high-water mark without rewriting one row per customer.
    //   Updating the same row again and again in one transaction costs PostgreSQL more each
    //   time (every version of it stays until the commit): a statement writing 200,000
    //   customers took minutes. Now a transaction locks the row of `change_log` and reads
    //   its number once, counts on in a transaction-local setting (tagged with the
    //   transaction, so that nothing else can pass for it), and writes the last number back
    //   once per statement, before the commit: the numbers, their commit order and what a
    //   reader of `change_log` sees are as before. The high-water mark moves once per
    //   statement too.
    // - The side effects of a change or a deletion (sessions, reset tokens, mirrored
    //   passwords, demo marks) run only where there is something to remove: a DELETE that
    //   removes nothing still fires the notifying statement triggers of its table, once per
    //   customer. A demo customer is adopted once per statement.
    r#"
CREATE OR REPLACE FUNCTION clientele_next_change() RETURNS bigint LANGUAGE plpgsql VOLATILE
    SET search_path FROM CURRENT AS $$
DECLARE
    mine text := txid_current()::text || ':';
    taken text := current_setting('clientele.change_seq', true);
    n bigint;
BEGIN
    IF left(taken, length(mine)) = mine THEN
        n := substr(taken, length(mine) + 1)::bigint;
    ELSE
        SELECT seq INTO STRICT n FROM change_log WHERE id = 1 FOR UPDATE;
    END IF;
    n := n + 1;
    PERFORM set_config('clientele.change_seq', mine || n::text, true);
    RETURN n;
END
$$;
CREATE FUNCTION clientele_changes_written() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
DECLARE
    taken text := current_setting('clientele.change_seq', true);
    mine text;
BEGIN
    IF taken IS NULL OR taken = '' THEN
        RETURN NULL;
    END IF;
    mine := txid_current()::text || ':';
    IF left(taken, length(mine)) = mine THEN
        UPDATE change_log SET seq = substr(taken, length(mine) + 1)::bigint
        WHERE id = 1 AND seq < substr(taken, length(mine) + 1)::bigint;
    END IF;
    RETURN NULL;
END
$$;
-- After the row triggers of the statement (a deletion's tombstone takes its number there).
CREATE TRIGGER customer_changes_written AFTER INSERT OR UPDATE OR DELETE ON customer
    FOR EACH STATEMENT EXECUTE FUNCTION clientele_changes_written();

DROP TRIGGER customer_id_high_insert ON customer;
CREATE OR REPLACE FUNCTION clientele_customer_id_high() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE customer_id_high SET id = added.high
    FROM (SELECT max(clcleunik) AS high FROM clientele_added) added
    WHERE customer_id_high.id < added.high;
    RETURN NULL;
END
$$;
CREATE TRIGGER customer_id_high_insert AFTER INSERT ON customer
    REFERENCING NEW TABLE AS clientele_added
    FOR EACH STATEMENT EXECUTE FUNCTION clientele_customer_id_high();

DROP TRIGGER customer_updated ON customer;
DROP FUNCTION clientele_customer_updated();
CREATE FUNCTION clientele_customer_password_changed() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM upstream_password WHERE clcleunik = NEW.clcleunik;
    IF EXISTS (SELECT 1 FROM reset_token WHERE customer = NEW.clcleunik) THEN
        DELETE FROM reset_token WHERE customer = NEW.clcleunik;
    END IF;
    IF EXISTS (SELECT 1 FROM session WHERE customer = NEW.clcleunik) THEN
        DELETE FROM session WHERE customer = NEW.clcleunik;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER customer_password_changed AFTER UPDATE ON customer FOR EACH ROW
    WHEN (OLD.password_hash IS DISTINCT FROM NEW.password_hash)
    EXECUTE FUNCTION clientele_customer_password_changed();
CREATE FUNCTION clientele_customers_adopted() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM demo_customer) THEN
        DELETE FROM demo_customer d
        WHERE EXISTS (SELECT 1 FROM clientele_changed c WHERE c.clcleunik = d.clcleunik);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER customer_adopted AFTER UPDATE ON customer
    REFERENCING NEW TABLE AS clientele_changed
    FOR EACH STATEMENT EXECUTE FUNCTION clientele_customers_adopted();

CREATE OR REPLACE FUNCTION clientele_customer_deleted() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO tombstone (seq, clcleunik) VALUES (clientele_next_change(), OLD.clcleunik);
    DELETE FROM upstream_password WHERE clcleunik = OLD.clcleunik;
    IF EXISTS (SELECT 1 FROM demo_customer WHERE clcleunik = OLD.clcleunik) THEN
        DELETE FROM demo_customer WHERE clcleunik = OLD.clcleunik;
    END IF;
    IF EXISTS (SELECT 1 FROM reset_token WHERE customer = OLD.clcleunik) THEN
        DELETE FROM reset_token WHERE customer = OLD.clcleunik;
    END IF;
    IF EXISTS (SELECT 1 FROM session WHERE customer = OLD.clcleunik) THEN
        DELETE FROM session WHERE customer = OLD.clcleunik;
    END IF;
    RETURN NULL;
END
$$;
"#,
    // 3: when each API key was last used (`clientele keys list`), by a key id that is never
    // given again. Not a column of `api_key`: its NOTIFY trigger would end every node's
    // caches at each write. Nodes keep last uses in memory and write them at most once a
    // minute and at shutdown (the latest wins); a key's deletion takes its row with it.
    r#"
ALTER TABLE api_key ADD COLUMN id bigint GENERATED BY DEFAULT AS IDENTITY UNIQUE;
CREATE TABLE api_key_use (
    key_id bigint PRIMARY KEY REFERENCES api_key (id) ON DELETE CASCADE,
    last_used text COLLATE "C" NOT NULL
);
"#,
    // 4: a demo customer stays one whatever is changed in it, until it is deleted or
    // removed with the others (SQLite's migration 16 says why).
    r#"
DROP TRIGGER IF EXISTS customer_adopted ON customer;
DROP FUNCTION IF EXISTS clientele_customers_adopted();
"#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Checks that the database is clientele's (or empty), brings its schema up to
/// [`SCHEMA_VERSION`] and hashes legacy plain-text passwords, holding the migration lock
/// throughout: a second node starting meanwhile waits, then finds nothing left to do. The
/// error says what is wrong, for a message that names the (redacted) URL.
pub fn prepare(client: &mut Client, hasher: &PasswordHasher) -> Result<OpenReport, Refusal> {
    let describe = |e: postgres::Error| Refusal::from_driver(&e);
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
        .and_then(|row| row.try_get(0))
        .map_err(describe)?;
    if !free {
        log::info!("PostgreSQL: another node is preparing the database; waiting for it");
        client
            .query_one("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .map_err(describe)?;
    }
    let prepared = prepare_locked(client, hasher);
    let unlocked = client
        .query_one("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .map_err(describe);
    let report = prepared?;
    unlocked?;
    Ok(report)
}

fn prepare_locked(client: &mut Client, hasher: &PasswordHasher) -> Result<OpenReport, Refusal> {
    let describe = |e: postgres::Error| Refusal::from_driver(&e);
    let (current, created) = check_ours(client)?;
    if current > SCHEMA_VERSION {
        return Err(Refusal::lasting(format!(
            "was written by a newer clientele (schema {current}; this one knows up to \
             {SCHEMA_VERSION}) and was not changed: run that newer version, or restore the \
             dump taken before the upgrade (README, \"Upgrading\")"
        )));
    }
    for (version, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(current)
        .map(|(i, sql)| (i + 1, sql))
    {
        let version = i32::try_from(version).unwrap_or(i32::MAX);
        let mut tx = client.transaction().map_err(describe)?;
        tx.batch_execute(sql).map_err(|e| {
            describe(e).explained(&format!(
                "could not create or migrate the schema (step {version})"
            ))
        })?;
        tx.execute(
            "UPDATE clientele_meta SET schema_version = $1 WHERE id = 1",
            &[&version],
        )
        .map_err(describe)?;
        tx.commit().map_err(describe)?;
    }
    check_usable(client)?;
    let passwords_hashed = hash_legacy_passwords(client, hasher)?;
    Ok(OpenReport {
        created,
        passwords_hashed,
    })
}

/// The schema version of a clientele database, or 0 for an empty one (then `true`: it is
/// created now). A database holding other tables, or another application's marker, is
/// refused untouched.
fn check_ours(client: &mut Client) -> Result<(usize, bool), Refusal> {
    let describe = |e: postgres::Error| Refusal::from_driver(&e);
    let refuse = |what: String| {
        Refusal::lasting(format!(
            "{what}; clientele has not changed it. Point `database` at another database"
        ))
    };
    let marked: bool = client
        .query_one("SELECT to_regclass('clientele_meta') IS NOT NULL", &[])
        .and_then(|row| row.try_get(0))
        .map_err(describe)?;
    if marked {
        let marker = client
            .query_opt(
                "SELECT application, schema_version FROM clientele_meta WHERE id = 1",
                &[],
            )
            .and_then(|row| {
                row.map(|row| {
                    Ok::<_, postgres::Error>((
                        row.try_get::<_, String>(0)?,
                        row.try_get::<_, i32>(1)?,
                    ))
                })
                .transpose()
            });
        return match marker {
            Ok(Some((application, version))) if application == APPLICATION => {
                Ok((usize::try_from(version).unwrap_or(0), false))
            }
            Ok(Some((application, _))) => Err(refuse(format!(
                "belongs to another application ({application:?} in clientele_meta)"
            ))),
            Ok(None) | Err(_) => Err(refuse(
                "is not a clientele database (its clientele_meta table is not ours)".into(),
            )),
        };
    }
    let tables: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
             ORDER BY 1",
            &[],
        )
        .map_err(describe)?
        .iter()
        .filter_map(|row| row.try_get(0).ok())
        .collect();
    if tables.is_empty() {
        return Ok((0, true));
    }
    let mut named = tables
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if tables.len() > 10 {
        named.push_str(&format!(" and {} more", tables.len() - 10));
    }
    Err(refuse(format!(
        "is not a clientele database (it holds the tables {named})"
    )))
}

/// The tables every node writes (logins count failures, sessions, the audit trail...).
const TABLES: [&str; 13] = [
    "clientele_meta",
    "customer",
    "change_log",
    "tombstone",
    "upstream_password",
    "demo_customer",
    "reset_token",
    "session",
    "customer_id_high",
    "api_key",
    "audit",
    "login_failure",
    "api_key_use",
];

/// Refuses, at start, a database this role cannot serve from: a table missing (dropped by
/// hand), or one it may not write (a read-only role), rather than starting healthy and
/// answering 500 to every login and write.
fn check_usable(client: &mut Client) -> Result<(), Refusal> {
    let describe = |e: postgres::Error| Refusal::from_driver(&e);
    let names: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
    let row = client
        .query_one(
            "SELECT
                 (SELECT string_agg(t, ', ') FROM unnest($1::text[]) AS t
                  WHERE to_regclass(t) IS NULL),
                 (SELECT string_agg(t, ', ') FROM unnest($1::text[]) AS t
                  WHERE to_regclass(t) IS NOT NULL
                    AND NOT has_table_privilege(to_regclass(t), 'SELECT, INSERT, UPDATE, DELETE'))",
            &[&names],
        )
        .map_err(describe)?;
    let missing: Option<String> = row.try_get(0).map_err(describe)?;
    let read_only: Option<String> = row.try_get(1).map_err(describe)?;
    if let Some(missing) = missing {
        return Err(Refusal::lasting(format!(
            "is a clientele database with tables missing ({missing}): restore it from a \
             backup (pg_dump), or point `database` at another database"
        )));
    }
    if let Some(tables) = read_only {
        return Err(Refusal::lasting(format!(
            "this role may not write {tables}: every node writes (failed logins, sessions, \
             the audit trail). Grant SELECT, INSERT, UPDATE, DELETE on the tables (and USAGE \
             on the sequences) to it, or use the role that owns them"
        )));
    }
    let no_sequences: Option<bool> = client
        .query_one(
            "SELECT NOT has_sequence_privilege('login_attempt', 'USAGE')
                 OR NOT has_sequence_privilege(pg_get_serial_sequence('audit', 'id'), 'USAGE')",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(describe)?;
    if no_sequences == Some(true) {
        return Err(Refusal::lasting(
            "this role may not use the sequences login_attempt and audit_id_seq: \
             grant USAGE on them, or use the role that owns them",
        ));
    }
    Ok(())
}

/// More legacy passwords than this are hashed on every core at start-up.
const LARGE_MIGRATION: usize = 256;

/// Hashes every stored password that is not already a hash, as the SQLite backend does, and
/// writes each only where the stored value is still the plain text that was hashed (a
/// `passwd` or an import committed meanwhile wins). Returns how many were replaced.
fn hash_legacy_passwords(client: &mut Client, hasher: &PasswordHasher) -> Result<usize, String> {
    let describe = |e: postgres::Error| super::describe_error(&e);
    let mut legacy: Vec<(i64, Secret)> = Vec::new();
    for row in client
        .query(LEGACY_PASSWORDS_QUERY, &[])
        .map_err(describe)?
    {
        let id: i64 = row.try_get(0).map_err(describe)?;
        let stored: String = row.try_get(1).map_err(describe)?;
        if !auth::is_hash(&stored) {
            legacy.push((id, Secret::new(stored)));
        }
    }
    if legacy.is_empty() {
        return Ok(0);
    }
    // The same progress lines as on SQLite, every few seconds.
    let progress = crate::store::sqlite::LogProgress::new();
    crate::transfer::Progress::phase(&progress, "hashing legacy passwords", legacy.len());
    let threads = if legacy.len() > LARGE_MIGRATION {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        hasher.concurrency()
    };
    let hashes = auth::parallel_map(&legacy, threads, |(_, plain)| {
        // An empty legacy password means "no password": nobody can log in with it.
        let hash = if plain.expose().is_empty() {
            Ok(None)
        } else {
            hasher.hash(plain).map(Some)
        };
        crate::transfer::Progress::step(&progress);
        hash
    });
    let mut tx = client.transaction().map_err(describe)?;
    let update = tx
        .prepare(
            "UPDATE customer SET password_hash = $3, updated_at = clientele_utc_ms() \
             WHERE clcleunik = $1 AND password_hash = $2",
        )
        .map_err(describe)?;
    let mut replaced = 0;
    for ((id, plain), hash) in legacy.iter().zip(hashes) {
        let hash = hash.map_err(|e| e.to_string())?;
        let changed = tx
            .execute(&update, &[id, &plain.expose(), &hash])
            .map_err(describe)?;
        replaced += usize::try_from(changed).unwrap_or(0);
    }
    tx.commit().map_err(describe)?;
    let kept = legacy.len() - replaced;
    log::warn!(
        "hashed {replaced} legacy plain-text password(s) in place with Argon2id{}",
        if kept > 0 {
            format!("; {kept} changed meanwhile and kept their new value")
        } else {
            String::new()
        }
    );
    Ok(replaced)
}
