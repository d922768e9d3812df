-- A store made before requests were metered in parts gets the columns, with the value every
-- old row meant: a request metered in one fact ('', 1, true).
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS request_id String DEFAULT '';
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS requests UInt8 DEFAULT 1;
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS final Bool DEFAULT true;
