//! The read models the projector maintains, one module per table family; the checks they
//! share are in `decode`.

pub mod analytics_daily;
pub mod auth_accounts;
pub mod auth_sessions;
pub mod community_posts;
mod decode;
pub mod projects;
pub mod service_status;
pub mod support_tickets;

pub use analytics_daily::AnalyticsDailyProjection;
pub use auth_accounts::AuthAccountsProjection;
pub use auth_sessions::AuthSessionsProjection;
pub use community_posts::CommunityPostsProjection;
pub use projects::ProjectsProjection;
pub use service_status::ServiceStatusProjection;
pub use support_tickets::SupportTicketsProjection;
