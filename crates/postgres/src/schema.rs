//! Diesel's view of the tables created by `migrations/`.
//!
//! Written by hand to match the SQL exactly (there is no diesel CLI or libpq in
//! the build); `tests/schema.rs` selects every column of every table from a
//! migrated database, so a drift fails the tests.

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        password_hash -> Text,
        name -> Text,
        point -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    menus (id) {
        id -> Uuid,
        name -> Text,
        price -> Int8,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    orders (id) {
        id -> Uuid,
        user_id -> Uuid,
        total_price -> Int8,
        balance_after -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    order_items (id) {
        id -> Uuid,
        order_id -> Uuid,
        menu_id -> Uuid,
        menu_name -> Text,
        quantity -> Int4,
        unit_price -> Int8,
        total_price -> Int8,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    point_transactions (id) {
        id -> Uuid,
        user_id -> Uuid,
        #[sql_name = "type"]
        kind -> Text,
        amount -> Int8,
        balance_after -> Int8,
        order_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    idempotency_keys (user_id, scope, key) {
        user_id -> Uuid,
        scope -> Text,
        key -> Text,
        fingerprint -> Bytea,
        outcome -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox_events (id) {
        id -> Uuid,
        event_type -> Text,
        aggregate_id -> Uuid,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
        locked_by -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    menu_sales_hourly (bucket_start, menu_id, shard) {
        bucket_start -> Timestamptz,
        menu_id -> Uuid,
        shard -> Int2,
        quantity -> Int8,
        order_count -> Int8,
    }
}

diesel::joinable!(orders -> users (user_id));
diesel::joinable!(order_items -> orders (order_id));
diesel::joinable!(order_items -> menus (menu_id));
diesel::joinable!(point_transactions -> users (user_id));
diesel::joinable!(idempotency_keys -> users (user_id));
diesel::joinable!(menu_sales_hourly -> menus (menu_id));

diesel::allow_tables_to_appear_in_same_query!(
    users,
    menus,
    orders,
    order_items,
    point_transactions,
    idempotency_keys,
    outbox_events,
    menu_sales_hourly,
);
