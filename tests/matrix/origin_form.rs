//! Origin-form (path-only) URIs with the features left: `FileStore`. (The
//! reqwest middleware sends absolute URLs only: see ARCHITECTURE.md's
//! matrix.)

use http::StatusCode;
use tower_oauth2::store::FileStore;
use tower_oauth2::OAuth2Layer;

use super::*;
use crate::support::token_server::{bearer, TestServer};

/// A token restored from the file goes on path-only requests with no token
/// request.
#[tokio::test]
async fn pair_origin_form_file_store_a_restored_token_goes_on_path_only_requests() {
    let server = TestServer::start().await;
    let dir = temp_dir();
    let path = token_file(&dir, "token.json");
    let first = server
        .client_credentials()
        .store(FileStore::new(&path))
        .build();
    assert_eq!(header(&first).await, Ok("Bearer at-1".to_owned()));
    let restarted = server
        .client_credentials()
        .store(FileStore::new(&path))
        .build();
    let svc = over_connection(&server, OAuth2Layer::new(restarted)).await;
    let sent = status(&svc, origin_form_get(&server, "/pkg.Svc/Call")).await;
    assert_eq!(sent, Ok(StatusCode::OK));
    assert_eq!(
        server.path_authorizations(),
        [bearer("/pkg.Svc/Call", "at-1")]
    );
    assert_eq!(server.token_requests(), 1);
}
