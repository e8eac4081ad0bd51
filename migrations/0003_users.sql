-- People who sign in to the web app, and their sessions.
--
-- Emails are unique regardless of case (people type them both ways); the stored
-- spelling is the one given at creation. Passwords are argon2id PHC strings.
-- A disabled user keeps their row (for the audit trail) but cannot sign in.
CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email          varchar(255) NOT NULL,
    password_hash  text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    role           text NOT NULL CHECK (role IN ('admin', 'viewer')),
    disabled_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- tower-sessions records. The session id (the cookie's secret) is stored only as
-- its SHA-256, so a copy of this table cannot be replayed as cookies. `user_id`
-- is copied out of the record so that disabling a user can end every one of
-- their sessions; `created_at` bounds a session's absolute lifetime.
CREATE TABLE sessions (
    id_sha256   bytea PRIMARY KEY CHECK (length(id_sha256) = 32),
    user_id     uuid REFERENCES users (id) ON DELETE CASCADE,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
