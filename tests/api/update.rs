//! UpdateToken: label and description changes with and without an update mask, the bookkeeping
//! fields it maintains, and its validation errors (which must leave the token unchanged).

use prost_types::FieldMask;
use tokenmint::proto::v1 as pb;
use tokenmint::proto::v1::token_service_client::TokenServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::helpers::{TestApp, assert_error, authed, bad_fields, error_meta};

type Client = TokenServiceClient<Channel>;

/// Label of the tokens the tests start from.
const LABEL: &str = "original label";
/// Description of the tokens the tests start from.
const DESCRIPTION: &str = "original description";

/// A server, a manager caller for "alice", a client and one of alice's tokens with [`LABEL`] and
/// [`DESCRIPTION`].
async fn setup() -> (TestApp, Client, String, pb::Token) {
    let app = TestApp::spawn().await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let request = pb::CreateTokenRequest {
        label: LABEL.into(),
        description: DESCRIPTION.into(),
        scopes: vec!["wallet_view".into()],
        ..Default::default()
    };
    let response = client
        .create_token(authed(&caller, request))
        .await
        .expect("CreateToken")
        .into_inner();
    let token = response.token.expect("CreateToken returns the token");
    (app, client, caller, token)
}

/// An update of `id` to `label` and `description` with `mask` (no mask when `None`).
fn update_request(
    id: &str,
    label: &str,
    description: &str,
    mask: Option<&[&str]>,
) -> pb::UpdateTokenRequest {
    pb::UpdateTokenRequest {
        id: id.to_owned(),
        label: label.to_owned(),
        description: description.to_owned(),
        update_mask: mask.map(|paths| FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    }
}

/// UpdateToken as `caller`; the token it returns.
async fn update(
    client: &mut Client,
    caller: &str,
    request: pb::UpdateTokenRequest,
) -> Result<pb::Token, Status> {
    let response = client
        .update_token(authed(caller, request))
        .await?
        .into_inner();
    Ok(response.token.expect("UpdateToken returns the token"))
}

/// GetToken as `caller`.
async fn get(client: &mut Client, caller: &str, id: &str) -> pb::Token {
    let request = authed(caller, pb::GetTokenRequest { id: id.to_owned() });
    let response = client
        .get_token(request)
        .await
        .expect("GetToken")
        .into_inner();
    response.token.expect("GetToken returns the token")
}

/// Asserts `before` is still what GetToken returns.
async fn assert_unchanged(client: &mut Client, caller: &str, before: &pb::Token) {
    let after = get(client, caller, &before.id).await;
    assert_eq!(&after, before, "a failed update must not change the token");
}

/// Microseconds of a timestamp field.
fn micros(ts: Option<prost_types::Timestamp>) -> i64 {
    let ts = ts.expect("timestamp is set");
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000
}

#[tokio::test]
async fn update_without_mask_changes_label_and_keeps_description_when_it_is_empty() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "new label", "", None);
    let updated = update(&mut client, &caller, request).await.expect("update");
    assert_eq!(updated.label, "new label");
    assert_eq!(updated.description, DESCRIPTION);
    assert_eq!(
        get(&mut client, &caller, &token.id).await,
        updated,
        "the change is stored"
    );
}

#[tokio::test]
async fn update_without_mask_changes_description_and_keeps_label_when_it_is_empty() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "", "new description", None);
    let updated = update(&mut client, &caller, request).await.expect("update");
    assert_eq!(updated.label, LABEL);
    assert_eq!(updated.description, "new description");
    assert_eq!(
        get(&mut client, &caller, &token.id).await,
        updated,
        "the change is stored"
    );
}

#[tokio::test]
async fn update_without_mask_changes_both_fields_when_both_are_given() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "new label", "new description", None);
    let updated = update(&mut client, &caller, request).await.expect("update");
    assert_eq!(updated.label, "new label");
    assert_eq!(updated.description, "new description");
    assert_eq!(
        get(&mut client, &caller, &token.id).await,
        updated,
        "the change is stored"
    );
}

#[tokio::test]
async fn update_advances_updated_at_and_records_the_caller_as_updated_by() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "new label", "", None);
    let updated = update(&mut client, &caller, request).await.expect("update");
    assert!(
        micros(updated.updated_at) > micros(token.updated_at),
        "updated_at advances"
    );
    assert_eq!(updated.updated_by, "alice");
    assert_eq!(
        updated.created_at, token.created_at,
        "created_at never changes"
    );
    assert_eq!(updated.created_by, token.created_by);
}

#[tokio::test]
async fn update_changes_nothing_but_label_description_and_update_bookkeeping() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "new label", "new description", None);
    let updated = update(&mut client, &caller, request).await.expect("update");
    let expected = pb::Token {
        label: updated.label.clone(),
        description: updated.description.clone(),
        updated_at: updated.updated_at,
        updated_by: updated.updated_by.clone(),
        ..token
    };
    assert_eq!(updated, expected);
}

#[tokio::test]
async fn description_mask_with_empty_description_clears_it_and_keeps_label() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "", "", Some(&["description"]));
    let updated = update(&mut client, &caller, request).await.expect("update");
    assert_eq!(updated.description, "");
    assert_eq!(updated.label, LABEL);
    assert_eq!(
        get(&mut client, &caller, &token.id).await,
        updated,
        "the change is stored"
    );
}

#[tokio::test]
async fn mask_ignores_fields_it_does_not_name() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(
        &token.id,
        "not in the mask",
        "new description",
        Some(&["description"]),
    );
    let updated = update(&mut client, &caller, request).await.expect("update");
    assert_eq!(updated.label, LABEL);
    assert_eq!(updated.description, "new description");
}

#[tokio::test]
async fn label_mask_with_empty_label_is_label_required() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "", "", Some(&["label"]));
    let err = update(&mut client, &caller, request)
        .await
        .expect_err("an empty label cannot be set");
    assert_error(&err, Code::InvalidArgument, "LABEL_REQUIRED");
    assert_eq!(bad_fields(&err), ["label"]);
    assert_unchanged(&mut client, &caller, &token).await;
}

#[tokio::test]
async fn mask_naming_a_field_that_cannot_change_is_invalid_update_mask() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "new label", "", Some(&["scopes"]));
    let err = update(&mut client, &caller, request)
        .await
        .expect_err("scopes cannot be updated");
    assert_error(&err, Code::InvalidArgument, "INVALID_UPDATE_MASK");
    assert_eq!(bad_fields(&err), ["update_mask.paths[0]"]);
    assert_eq!(error_meta(&err, "path").as_deref(), Some("scopes"));
    assert_unchanged(&mut client, &caller, &token).await;
}

#[tokio::test]
async fn mask_with_a_valid_and_an_invalid_path_names_only_the_invalid_one() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "new label", "", Some(&["label", "admin"]));
    let err = update(&mut client, &caller, request)
        .await
        .expect_err("admin cannot be updated");
    assert_error(&err, Code::InvalidArgument, "INVALID_UPDATE_MASK");
    assert_eq!(bad_fields(&err), ["update_mask.paths[1]"]);
    assert_unchanged(&mut client, &caller, &token).await;
}

#[tokio::test]
async fn update_without_mask_and_without_values_is_empty_update() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "", "", None);
    let err = update(&mut client, &caller, request)
        .await
        .expect_err("nothing to update");
    assert_error(&err, Code::InvalidArgument, "EMPTY_UPDATE");
    assert_eq!(bad_fields(&err), ["update_mask"]);
    assert_unchanged(&mut client, &caller, &token).await;
}

#[tokio::test]
async fn label_of_101_characters_is_invalid_label() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, &"x".repeat(101), "", None);
    let err = update(&mut client, &caller, request)
        .await
        .expect_err("labels hold at most 100 characters");
    assert_error(&err, Code::InvalidArgument, "INVALID_LABEL");
    assert_eq!(bad_fields(&err), ["label"]);
    assert_unchanged(&mut client, &caller, &token).await;
}

#[tokio::test]
async fn label_of_100_characters_is_accepted() {
    let (_app, mut client, caller, token) = setup().await;
    let label = "é".repeat(100);

    let request = update_request(&token.id, &label, "", None);
    let updated = update(&mut client, &caller, request).await.expect("update");
    assert_eq!(updated.label, label);
}

#[tokio::test]
async fn label_is_trimmed() {
    let (_app, mut client, caller, token) = setup().await;

    let request = update_request(&token.id, "   padded label \t ", "", None);
    let updated = update(&mut client, &caller, request).await.expect("update");
    assert_eq!(updated.label, "padded label");
    assert_eq!(
        get(&mut client, &caller, &token.id).await.label,
        "padded label"
    );
}

#[tokio::test]
async fn updating_a_deleted_token_is_not_found() {
    let (_app, mut client, caller, token) = setup().await;
    let delete = pb::DeleteTokenRequest {
        id: token.id.clone(),
    };
    client
        .delete_token(authed(&caller, delete))
        .await
        .expect("DeleteToken");

    let request = update_request(&token.id, "new label", "", None);
    let err = update(&mut client, &caller, request)
        .await
        .expect_err("a deleted token cannot be updated");
    assert_error(&err, Code::NotFound, "TOKEN_NOT_FOUND");
}
