-- A wss:// gateway whose certificate no root vouches for (self-signed, as gateways often
-- are): the SHA-256 of the one certificate to accept, as 32 colon-separated lower-case hex
-- pairs. NULL: the platform's root certificates decide (or the gateway speaks ws://).
ALTER TABLE gateways ADD COLUMN tls_pin text
    CHECK (tls_pin ~ '^[0-9a-f]{2}(:[0-9a-f]{2}){31}$');
