-- Per-tenant override of the realtime model's API key, sealed like the Twilio auth token.
ALTER TABLE tenants ADD COLUMN openai_key_enc BLOB;
ALTER TABLE tenants ADD COLUMN openai_key_hint TEXT;
