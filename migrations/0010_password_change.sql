-- A password someone else chose (the first administrator's printed one-time password)
-- must be replaced by its owner at first sign-in; until then the account can do nothing
-- else. Cleared when the owner sets their own password.
ALTER TABLE users ADD COLUMN must_change_password boolean NOT NULL DEFAULT false;
