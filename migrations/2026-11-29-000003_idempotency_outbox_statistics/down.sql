DROP TABLE menu_sales_hourly;
DROP TABLE outbox_events;
DROP TABLE idempotency_keys;
