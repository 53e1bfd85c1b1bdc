DROP TABLE point_transactions;
DROP TABLE order_items;
DROP TABLE orders;
