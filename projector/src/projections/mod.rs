//! The read models the projector maintains, one module per table family; the checks they
//! share are in [`decode`].

pub mod analytics_daily;
pub mod community_posts;
mod decode;
pub mod projects;
pub mod service_status;
pub mod support_tickets;

pub use analytics_daily::AnalyticsDailyProjection;
pub use community_posts::CommunityPostsProjection;
pub use projects::ProjectsProjection;
pub use service_status::ServiceStatusProjection;
pub use support_tickets::SupportTicketsProjection;
