-- How a reading's x, y and z are stored: 0 = little-endian float32 per sample (any
-- value a gateway sends), 1 = little-endian int16 of whole milli-g (what a gateway
-- sending base64 int16 gives: half the size, decoded to exactly the same values).
ALTER TABLE readings ADD COLUMN waveform_encoding smallint NOT NULL DEFAULT 0
    CHECK (waveform_encoding IN (0, 1));
