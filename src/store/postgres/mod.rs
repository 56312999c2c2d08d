//! The PostgreSQL backend (being written: this placeholder refuses to start).

use std::sync::Arc;

use crate::auth::{PasswordHasher, Secret};
use crate::customer::Totals;
use crate::error::{ApiError, StartupError};
use crate::store::{Backend, OpenReport};

#[derive(Clone)]
pub struct Pg {
    totals: Arc<Totals>,
}

/// (Placeholder.)
pub type PooledClient = rusqlite::Connection;

impl Pg {
    pub fn open(url: &Secret, _hasher: &PasswordHasher) -> Result<(Pg, OpenReport), StartupError> {
        Err(StartupError::Config(format!(
            "database {}: PostgreSQL is not supported by this build",
            redact_url(url.expose())
        )))
    }
    pub fn created(&self) -> bool {
        false
    }
    pub fn generation(&self) -> Option<i64> {
        None
    }
    pub fn totals(&self) -> Arc<Totals> {
        Arc::clone(&self.totals)
    }
    pub async fn run<T, E, F>(&self, _work: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        E: Into<ApiError>,
        F: FnOnce(&mut dyn Backend) -> Result<T, E> + Send + 'static,
    {
        Err(ApiError::internal(std::io::Error::other("no PostgreSQL")))
    }
    pub fn connection(&self) -> Result<PooledClient, ApiError> {
        Err(ApiError::internal(std::io::Error::other("no PostgreSQL")))
    }
    pub fn dedicated(&self) -> Result<PooledClient, ApiError> {
        Err(ApiError::internal(std::io::Error::other("no PostgreSQL")))
    }
    pub async fn check_health(&self) -> Result<(), ApiError> {
        Ok(())
    }
    pub fn describe(&self) -> String {
        String::new()
    }
}

pub fn redact_url(url: &str) -> String {
    url.to_owned()
}

pub fn api_error(e: ::postgres::Error) -> ApiError {
    ApiError::internal(e)
}
