-- Sign-in throttling shared by every instance (it was kept in each process's memory).
-- One row per key ("account:<email>", "ip:<address>"): attempts in the window that
-- began at window_start. An attempt is counted before its password is checked, so
-- parallel guesses cannot all pass the check; a success clears its account's row.
CREATE TABLE sign_in_attempts (
    key           text PRIMARY KEY,
    attempts      integer NOT NULL,
    window_start  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_attempts_window_start_idx ON sign_in_attempts (window_start);
