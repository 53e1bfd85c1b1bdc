-- Accounts and the menu.
--
-- Money is `bigint` points (1 KRW = 1 point). The balance lives on the user row
-- so a payment is one conditional UPDATE (`... WHERE point >= $amount`); the
-- CHECK is the last line of defence against a negative balance.

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    email         text        NOT NULL,
    password_hash text        NOT NULL,
    name          text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 50),
    point         bigint      NOT NULL DEFAULT 0 CHECK (point >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- Emails are stored trimmed and lower-cased by the application; the unique
    -- index is what decides a race between two signups with one address.
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_length CHECK (char_length(email) BETWEEN 3 AND 254)
);

CREATE TABLE menus (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    price      bigint      NOT NULL CHECK (price > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT menus_name_key UNIQUE (name)
);

-- Fixed ids so that demos, docs and tests can name a coffee.
INSERT INTO menus (id, name, price) VALUES
    ('0192f0a0-0000-7000-8000-000000000001', 'Americano',        4000),
    ('0192f0a0-0000-7000-8000-000000000002', 'Caffe Latte',      4500),
    ('0192f0a0-0000-7000-8000-000000000003', 'Cappuccino',       4500),
    ('0192f0a0-0000-7000-8000-000000000004', 'Caffe Mocha',      5000),
    ('0192f0a0-0000-7000-8000-000000000005', 'Caramel Macchiato',5500),
    ('0192f0a0-0000-7000-8000-000000000006', 'Vanilla Latte',    5000),
    ('0192f0a0-0000-7000-8000-000000000007', 'Flat White',       5000),
    ('0192f0a0-0000-7000-8000-000000000008', 'Espresso',         3500),
    ('0192f0a0-0000-7000-8000-000000000009', 'Cold Brew',        4800),
    ('0192f0a0-0000-7000-8000-00000000000a', 'Einspanner',       5800);
