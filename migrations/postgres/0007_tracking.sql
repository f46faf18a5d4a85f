-- Open and click tracking (issue 9).
--
-- `email_activity.machine`: an open or click that a machine made, not the
-- customer (a mail client's privacy proxy fetching every image, a security
-- scanner following every link within seconds of delivery). Recorded, so an
-- operator sees it, but it is not engagement: the sunset rule skips it.
-- `outbox.tracked`: the email carried an open pixel, so "no open recorded"
-- means "not opened" for the sunset rule (without a pixel it means "not
-- known"). Both have constant defaults: adding them rewrites no row.
ALTER TABLE email_activity ADD COLUMN machine BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE outbox ADD COLUMN tracked BOOLEAN NOT NULL DEFAULT false;
-- The sunset rule asks, per sent email, whether a human opened or clicked it.
CREATE INDEX email_activity_human ON email_activity (idempotency_key) WHERE NOT machine;
