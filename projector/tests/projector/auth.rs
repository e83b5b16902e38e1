//! The accounts' read models (`auth_accounts`, `auth_sessions`) built from events appended to
//! the real log, and equal to a fresh rebuild of themselves.

use event_store::append::{NewEvent, append};
use events::account::{self, AccountEvent};
use events::session::{self, LoginMethod, RevokeReason, SessionEvent};
use projector::projections::{AuthAccountsProjection, AuthSessionsProjection};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{domain_event as event, settle_projection as settle};

fn account_event(id: Uuid, sequence: i64, payload: &AccountEvent) -> NewEvent {
    event(account::AGGREGATE_TYPE, &id.to_string(), sequence, payload)
}

fn session_event(id: Uuid, sequence: i64, payload: &SessionEvent) -> NewEvent {
    let mut row = event(session::AGGREGATE_TYPE, &id.to_string(), sequence, payload);
    row.metadata["ip"] = serde_json::json!("203.0.113.7");
    row.metadata["user_agent"] = serde_json::json!("curl/8");
    row
}

/// When the seed's refresh says the new token lapses: a whole second, so it survives the
/// database's microseconds.
fn refreshed_lapses() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(2_000_000_000, 0).unwrap()
}

/// An account registered, verified, made admin and auditor, then admin only, disabled, and
/// enabled again; with two sessions, one refreshed and one revoked.
async fn seed(pool: &PgPool) -> (Uuid, Uuid, Uuid) {
    let account_id = Uuid::now_v7();
    let roles = |granted: &[&str], previous: &[&str]| AccountEvent::RolesChanged {
        account_id,
        roles: granted.iter().map(|r| (*r).to_owned()).collect(),
        previous: previous.iter().map(|r| (*r).to_owned()).collect(),
    };
    let history = [
        AccountEvent::AccountRegistered {
            account_id,
            email: "ada@example.com".into(),
        },
        AccountEvent::VerificationRequested {
            account_id,
            expires_at: chrono::Utc::now(),
        },
        AccountEvent::EmailVerified { account_id },
        roles(&["admin", "auditor"], &[]),
        roles(&["admin"], &["admin", "auditor"]),
        AccountEvent::AccountDisabled {
            account_id,
            reason: Some("test".into()),
        },
        AccountEvent::AccountEnabled { account_id },
    ];
    let rows: Vec<NewEvent> = history
        .iter()
        .zip(1..)
        .map(|(payload, sequence)| account_event(account_id, sequence, payload))
        .collect();
    append(pool, &rows, None).await.unwrap();

    let (kept, revoked) = (Uuid::now_v7(), Uuid::now_v7());
    let login = |session_id| SessionEvent::LoginSucceeded {
        session_id,
        account_id,
        method: LoginMethod::Password,
        amr: vec!["pwd".into()],
        expires_at: chrono::Utc::now() + chrono::Duration::days(30),
        refresh_expires_at: Some(chrono::Utc::now() + chrono::Duration::days(1)),
    };
    // The refresh commits after the login, as it would: its time is the session's last use.
    append(pool, &[session_event(kept, 1, &login(kept))], None)
        .await
        .unwrap();
    append(
        pool,
        &[
            session_event(
                kept,
                2,
                &SessionEvent::SessionRefreshed {
                    session_id: kept,
                    generation: 2,
                    refresh_expires_at: Some(refreshed_lapses()),
                },
            ),
            session_event(revoked, 1, &login(revoked)),
            session_event(
                revoked,
                2,
                &SessionEvent::RefreshReused {
                    session_id: revoked,
                    account_id,
                    presented_generation: 1,
                    current_generation: 2,
                },
            ),
            session_event(
                revoked,
                3,
                &SessionEvent::SessionRevoked {
                    session_id: revoked,
                    account_id,
                    reason: RevokeReason::RefreshReuse,
                },
            ),
        ],
        None,
    )
    .await
    .unwrap();
    (account_id, kept, revoked)
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn accounts_show_their_address_roles_and_state_at_their_latest_version(pool: PgPool) {
    let (account_id, _, _) = seed(&pool).await;
    assert_eq!(settle(&pool, &AuthAccountsProjection).await, 7);

    let (email, roles, verified, disabled, version, totp, codes): (
        String,
        Vec<String>,
        bool,
        bool,
        i64,
        bool,
        i32,
    ) = sqlx::query_as(
        "SELECT email, roles, verified, disabled, version, totp_enabled, \
                recovery_codes_remaining \
           FROM auth_accounts WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(email, "ada@example.com");
    assert_eq!(roles, ["user", "admin"]);
    assert!(verified);
    assert!(!disabled, "enabled again");
    assert_eq!(version, 7);
    assert_eq!((totp, codes), (false, 0));
}

/// The second-factor columns `GET /auth/me` serves, after each TOTP event.
#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn accounts_show_totp_and_the_recovery_codes_left(pool: PgPool) {
    let account_id = Uuid::now_v7();
    let state = |pool: PgPool| async move {
        sqlx::query_as::<_, (bool, i32)>(
            "SELECT totp_enabled, recovery_codes_remaining FROM auth_accounts \
              WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let steps = [
        AccountEvent::AccountRegistered {
            account_id,
            email: "grace@example.com".into(),
        },
        AccountEvent::TotpEnabled { account_id },
        AccountEvent::RecoveryCodesGenerated {
            account_id,
            count: 10,
        },
        AccountEvent::RecoveryCodeUsed {
            account_id,
            remaining: 9,
        },
        AccountEvent::TotpDisabled {
            account_id,
            by: account::DisabledBy::Owner,
        },
    ];
    let expected = [(false, 0), (true, 0), (true, 10), (true, 9), (false, 0)];
    for ((payload, sequence), want) in steps.iter().zip(1..).zip(expected) {
        append(&pool, &[account_event(account_id, sequence, payload)], None)
            .await
            .unwrap();
        settle(&pool, &AuthAccountsProjection).await;
        assert_eq!(state(pool.clone()).await, want, "after revision {sequence}");
    }
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn accounts_list_their_passkeys_and_their_last_use_until_removed(pool: PgPool) {
    let account_id = Uuid::now_v7();
    let listed = |pool: PgPool| async move {
        sqlx::query_as::<_, (String, String, bool)>(
            "SELECT credential_id, label, last_used_at IS NOT NULL FROM auth_account_passkeys \
              WHERE account_id = $1 ORDER BY created_at, credential_id",
        )
        .bind(account_id)
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let registered = |id: &str, label: &str| AccountEvent::PasskeyRegistered {
        account_id,
        credential_id: id.to_owned(),
        label: label.to_owned(),
    };
    let steps = [
        AccountEvent::AccountRegistered {
            account_id,
            email: "lin@example.com".into(),
        },
        registered("Y3JlZC1h", "laptop"),
        registered("Y3JlZC1i", "phone"),
        AccountEvent::PasskeyUsed {
            account_id,
            credential_id: "Y3JlZC1i".to_owned(),
        },
        AccountEvent::PasskeyRemoved {
            account_id,
            credential_id: "Y3JlZC1h".to_owned(),
        },
        // A sign-in that raced the removal lists nothing again.
        AccountEvent::PasskeyUsed {
            account_id,
            credential_id: "Y3JlZC1h".to_owned(),
        },
    ];
    let row = |id: &str, label: &str, used| (id.to_owned(), label.to_owned(), used);
    let expected = [
        vec![],
        vec![row("Y3JlZC1h", "laptop", false)],
        vec![
            row("Y3JlZC1h", "laptop", false),
            row("Y3JlZC1i", "phone", false),
        ],
        vec![
            row("Y3JlZC1h", "laptop", false),
            row("Y3JlZC1i", "phone", true),
        ],
        vec![row("Y3JlZC1i", "phone", true)],
        vec![row("Y3JlZC1i", "phone", true)],
    ];
    for ((payload, sequence), want) in steps.iter().zip(1..).zip(expected) {
        append(&pool, &[account_event(account_id, sequence, payload)], None)
            .await
            .unwrap();
        settle(&pool, &AuthAccountsProjection).await;
        assert_eq!(
            listed(pool.clone()).await,
            want,
            "after revision {sequence}"
        );
    }
    let version: i64 =
        sqlx::query_scalar("SELECT version FROM auth_accounts WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(version, 6, "the row follows the stream");
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn sessions_show_where_they_came_from_their_family_and_their_end(pool: PgPool) {
    let (account_id, kept, revoked) = seed(&pool).await;
    assert_eq!(settle(&pool, &AuthSessionsProjection).await, 5);

    type Row = (
        Uuid,
        Option<String>,
        Option<String>,
        Vec<String>,
        i64,
        bool,
        Option<String>,
        bool,
        Option<chrono::DateTime<chrono::Utc>>,
    );
    let row = |id: Uuid| {
        let pool = pool.clone();
        async move {
            let row: Row = sqlx::query_as(
                "SELECT account_id, ip, user_agent, amr, generation, \
                        reuse_detected_at IS NOT NULL, revoke_reason, last_used_at > created_at, \
                        refresh_expires_at \
                   FROM auth_sessions WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
            row
        }
    };
    let live = row(kept).await;
    assert_eq!(live.0, account_id);
    assert_eq!(live.1.as_deref(), Some("203.0.113.7"));
    assert_eq!(live.2.as_deref(), Some("curl/8"));
    assert_eq!(live.3, ["pwd"]);
    assert_eq!(live.4, 2, "the refresh moved the generation");
    assert!(live.7, "the refresh moved last_used_at");
    assert_eq!(live.8, Some(refreshed_lapses()), "and the refresh's lapse");
    assert_eq!(live.6, None);
    let ended = row(revoked).await;
    assert!(ended.5, "reuse is recorded");
    assert_eq!(ended.6.as_deref(), Some("refresh_reuse"));
}

#[sqlx::test(migrator = "event_store::MIGRATOR")]
async fn the_accounts_read_models_equal_a_rebuild_of_themselves(pool: PgPool) {
    seed(&pool).await;
    settle(&pool, &AuthAccountsProjection).await;
    settle(&pool, &AuthSessionsProjection).await;
    for projection in [
        &AuthAccountsProjection as &dyn projector::Projection,
        &AuthSessionsProjection,
    ] {
        let differences = projector::rebuild::verify(&pool, &pool, projection, 2)
            .await
            .unwrap();
        assert!(differences.is_empty(), "{differences:?}");
    }
    projector::rebuild::rebuild(&pool, &pool, &AuthSessionsProjection, 2, false)
        .await
        .unwrap();
    let live: i64 =
        sqlx::query_scalar("SELECT count(*) FROM auth_sessions WHERE revoked_at IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(live, 1);
}
