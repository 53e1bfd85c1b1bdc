//! Accounts in the `users` table.

use async_trait::async_trait;
use coffee_domain::{Email, PasswordHash, Points, User, UserId, UserName};
use coffee_ports::{CreateUserError, Credentials, InfraError, NewUser, UserRepository};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::RunQueryDsl;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{self, Settle as _};
use crate::pool::PgPool;
use crate::schema::users;

/// [`UserRepository`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgUserRepository {
    pool: PgPool,
}

impl PgUserRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
struct UserRow {
    id: Uuid,
    email: String,
    name: String,
    point: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<UserRow> for User {
    type Error = InfraError;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let invalid = |what: String| {
            InfraError::Unexpected(anyhow::anyhow!("user {} in the database is invalid: {what}", row.id))
        };
        Ok(User {
            id: UserId::from_uuid(row.id),
            email: Email::parse(&row.email).map_err(|e| invalid(e.to_string()))?,
            name: UserName::parse(&row.name).map_err(|e| invalid(e.to_string()))?,
            point: Points::new(row.point).map_err(|e| invalid(e.to_string()))?,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUserRow<'a> {
    id: Uuid,
    email: &'a str,
    password_hash: &'a str,
    name: &'a str,
}

#[async_trait]
impl UserRepository for PgUserRepository {
    #[tracing::instrument(name = "pg.users.create", skip_all)]
    async fn create(&self, user: NewUser) -> Result<User, CreateUserError> {
        let mut conn = self.pool.get().await?;
        let mark = conn.warning_mark();
        let insert = diesel::insert_into(users::table)
            .values(NewUserRow {
                id: user.id.as_uuid(),
                email: user.email.as_str(),
                password_hash: user.password_hash.as_str(),
                name: user.name.as_str(),
            })
            .returning(UserRow::as_returning())
            .get_result(&mut conn);
        // Bounded like every commit of a request (see `idempotency::run`).
        let Ok(inserted) = tokio::time::timeout(self.pool.commit_deadline(), insert).await else {
            self.pool.discard(conn);
            return Err(error::commit_wait_exceeded(self.pool.commit_deadline()).into());
        };
        let row = inserted.map_err(|e| match e {
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, ref info)
                if info.constraint_name() == Some("users_email_key") =>
            {
                CreateUserError::EmailTaken
            }
            other => CreateUserError::Infra(error::from_diesel(other)),
        });
        let row = match row {
            Err(CreateUserError::Infra(e)) => return Err(error::settle(&conn, e).await.into()),
            other => other?,
        };
        if !conn.replicated_since(mark) {
            // Its commit's wait for the synchronous standby was cancelled.
            return Err(error::unreplicated_commit().into());
        }
        Ok(User::try_from(row)?)
    }

    #[tracing::instrument(name = "pg.users.find_credentials", skip_all)]
    async fn find_credentials(&self, email: &Email) -> Result<Option<Credentials>, InfraError> {
        let mut conn = self.pool.get().await?;
        let row: Option<(Uuid, String)> = users::table
            .filter(users::email.eq(email.as_str()))
            .select((users::id, users::password_hash))
            .first(&mut conn)
            .await
            .optional()
            .settle(&conn)
            .await?;
        Ok(row.map(|(id, hash)| Credentials {
            user_id: UserId::from_uuid(id),
            password_hash: PasswordHash::new(hash),
        }))
    }

    #[tracing::instrument(name = "pg.users.find_by_id", skip_all)]
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, InfraError> {
        let mut conn = self.pool.get().await?;
        let row: Option<UserRow> = users::table
            .find(id.as_uuid())
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .settle(&conn)
            .await?;
        row.map(User::try_from).transpose()
    }
}
