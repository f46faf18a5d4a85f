-- A bounce or complaint from a relay's webhook (`POST /v1/providers/<name>`)
-- or a DSN (`POST /v1/bounces`) names an address, not a customer: the
-- customers it concerns are found by their address, without regard to ASCII
-- case.
CREATE INDEX IF NOT EXISTS customers_email ON customers (lower(email));
