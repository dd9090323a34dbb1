-- The pending set shared by every worker of every host (src/pending/postgres.rs).
-- Times the workers pass in (not_before, received, pauses) are unix
-- milliseconds, as in the SQLite store; leases and the fleet write ceiling
-- use the database's clock, so that hosts' clocks never have to agree.

CREATE TABLE pending (
    sequence          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    installation      BIGINT  NOT NULL,
    repo              TEXT    NOT NULL,
    kind              TEXT    NOT NULL,   -- 'pull_request' or 'merge_group'
    target            TEXT    NOT NULL,   -- the pull request number or the merge commit
    delivery_id       TEXT    NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    not_before        BIGINT,             -- unix ms; NULL means now
    claimed_by        TEXT,               -- owner of the claim, NULL when waiting
    added_again       BOOLEAN NOT NULL DEFAULT false,
    received_ms       BIGINT,             -- the earliest delivery the next claim answers
    again_received_ms BIGINT,             -- the first delivery recorded while claimed
    UNIQUE (installation, repo, kind, target)
);
CREATE INDEX pending_waiting ON pending (installation, sequence) WHERE claimed_by IS NULL;
CREATE INDEX pending_claimed ON pending (claimed_by) WHERE claimed_by IS NOT NULL;

CREATE TABLE pauses (
    installation BIGINT PRIMARY KEY,
    until_ms     BIGINT NOT NULL
);

CREATE TABLE deliveries (
    id      TEXT PRIMARY KEY,
    seen_ms BIGINT NOT NULL
);
CREATE INDEX deliveries_seen ON deliveries (seen_ms);

-- One row per live worker process; its claims are valid while its lease,
-- renewed by a heartbeat, has not run out.
CREATE TABLE owners (
    owner       TEXT PRIMARY KEY,
    host        TEXT        NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
);

CREATE TABLE workers (
    owner        TEXT PRIMARY KEY,
    name         TEXT    NOT NULL,
    host         TEXT    NOT NULL,
    pid          BIGINT  NOT NULL,
    started_ms   BIGINT  NOT NULL,
    heartbeat_ms BIGINT  NOT NULL,
    deliveries   BIGINT  NOT NULL DEFAULT 0,
    writes       BIGINT  NOT NULL DEFAULT 0,
    unchanged    BIGINT  NOT NULL DEFAULT 0,
    dropped      BIGINT  NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX workers_heartbeat ON workers (heartbeat_ms);

CREATE TABLE dropped (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms        BIGINT NOT NULL,
    installation BIGINT NOT NULL,
    repo         TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    target       TEXT   NOT NULL,
    cause        TEXT   NOT NULL,
    worker       TEXT   NOT NULL
);
CREATE INDEX dropped_at ON dropped (at_ms);

-- FLEET_WRITE_RATE: the generic cell rate algorithm's theoretical arrival
-- time per installation, one row each, updated in one statement.
CREATE TABLE fleet_write_rate (
    installation BIGINT PRIMARY KEY,
    tat          TIMESTAMPTZ NOT NULL
);
