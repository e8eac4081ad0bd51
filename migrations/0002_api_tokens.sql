-- API tokens for scripts: `Authorization: Bearer <token>`.
-- Only a SHA-256 of the token is stored (tokens are 256 random bits, so a slow
-- password hash adds nothing); the token itself is shown once, at creation.
CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          varchar(255) NOT NULL,
    role          text NOT NULL CHECK (role IN ('admin', 'viewer')),
    token_sha256  bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_active_idx ON api_tokens (created_at) WHERE revoked_at IS NULL;
