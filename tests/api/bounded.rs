//! Bounded work for any request: every repeated request field has a cap (`requests.*`), refused
//! with INVALID_ARGUMENT `TOO_MANY_ITEMS` before any other work; and no list response outgrows
//! what a default gRPC client accepts (4 MiB): a page ends early with a `next_page_token`.

use std::collections::HashSet;

use prost::Message;
use prost_types::FieldMask;
use tokenmint::config::RequestSettings;
use tokenmint::proto::v1 as pb;
use tonic::{Code, Status};

use crate::helpers::{TestApp, assert_error, authed, bad_fields, error_meta};

/// What a default tonic client decodes at most (`max_decoding_message_size`).
const DEFAULT_CLIENT_LIMIT: usize = 4 * 1024 * 1024;

/// `n` copies of `s`.
fn copies(s: &str, n: usize) -> Vec<String> {
    vec![s.to_owned(); n]
}

/// `n` distinct IPv6 hosts of the longest normalised form (43 characters each), `tag` making
/// them distinct between calls.
fn hosts(tag: usize, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("2001:db8:aaaa:bbbb:cccc:dddd:{tag:04x}:{i:04x}"))
        .collect()
}

/// `n` spending limits on distinct 32-character coins, each at a 78-digit amount.
fn limits(n: usize) -> Option<pb::TokenLimits> {
    Some(pb::TokenLimits {
        spending_limits: (0..n)
            .map(|i| pb::SpendingLimit {
                coin: format!("{}{i:04}", "c".repeat(28)),
                tx_value_limit: "9".repeat(78),
            })
            .collect(),
        all_erc20_tokens_limit: None,
    })
}

/// Asserts `status` is TOO_MANY_ITEMS about `field`, naming the cap and the count.
#[track_caller]
fn assert_too_many(status: &Status, field: &str, max: usize) {
    assert_error(status, Code::InvalidArgument, "TOO_MANY_ITEMS");
    assert_eq!(bad_fields(status), [field], "{status:?}");
    assert_eq!(error_meta(status, "field").as_deref(), Some(field));
    assert_eq!(error_meta(status, "max"), Some(max.to_string()));
    assert_eq!(error_meta(status, "count"), Some((max + 1).to_string()));
}

#[tokio::test]
async fn create_token_fields_over_their_caps_are_too_many_items_and_the_caps_are_accepted() {
    let app = TestApp::spawn().await;
    let caps = RequestSettings::default();
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let at_caps = pb::CreateTokenRequest {
        label: "at the caps".into(),
        scopes: copies("wallet_view", caps.max_scopes.get()),
        ip_restrict: hosts(0, caps.max_ip_entries.get()),
        token_limits: limits(caps.max_spending_limits.get()),
        ..Default::default()
    };
    let created = client
        .create_token(authed(&caller, at_caps.clone()))
        .await
        .expect("exactly the caps are accepted")
        .into_inner()
        .token
        .unwrap();
    assert_eq!(created.ip_restrict.len(), caps.max_ip_entries.get());
    assert_eq!(
        created.token_limits.unwrap().spending_limits.len(),
        caps.max_spending_limits.get()
    );

    let over: [(&str, usize, pb::CreateTokenRequest); 3] = [
        (
            "scopes",
            caps.max_scopes.get(),
            pb::CreateTokenRequest {
                scopes: copies("wallet_view", caps.max_scopes.get() + 1),
                ..at_caps.clone()
            },
        ),
        (
            "ip_restrict",
            caps.max_ip_entries.get(),
            pb::CreateTokenRequest {
                ip_restrict: hosts(0, caps.max_ip_entries.get() + 1),
                ..at_caps.clone()
            },
        ),
        (
            "token_limits.spending_limits",
            caps.max_spending_limits.get(),
            pb::CreateTokenRequest {
                token_limits: limits(caps.max_spending_limits.get() + 1),
                ..at_caps.clone()
            },
        ),
    ];
    for (field, max, request) in over {
        let status = client
            .create_token(authed(&caller, request))
            .await
            .unwrap_err();
        assert_too_many(&status, field, max);
    }
    let listed = client
        .list_tokens(authed(&caller, pb::ListTokensRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.tokens.len(),
        2,
        "only the caller and the token at the caps exist"
    );
}

/// The count is checked before anything else: before the caller is authenticated, and before
/// any entry is parsed (cap + 1 unparsable addresses are TOO_MANY_ITEMS, not INVALID_IP_ADDRESS).
#[tokio::test]
async fn the_cap_is_checked_before_authentication_and_parsing() {
    let app = TestApp::spawn().await;
    let max = RequestSettings::default().max_ip_entries.get();
    let mut client = app.client().await;
    let request = pb::CreateTokenRequest {
        label: "x".into(),
        ip_restrict: copies("not an address", max + 1),
        ..Default::default()
    };
    let status = client
        .create_token(tonic::Request::new(request))
        .await
        .unwrap_err();
    assert_too_many(&status, "ip_restrict", max);
}

#[tokio::test]
async fn template_fields_over_their_caps_are_too_many_items_and_the_caps_are_accepted() {
    let app = TestApp::spawn().await;
    let caps = RequestSettings::default();
    let caller = app.manager("alice").await;
    let mut templates = app.templates().await;
    let at_caps = pb::CreateTemplateRequest {
        name: "at the caps".into(),
        token_scopes: copies("wallet_view", caps.max_scopes.get()),
        allowed_ips: hosts(0, caps.max_ip_entries.get()),
        token_limits: limits(caps.max_spending_limits.get()),
        ..Default::default()
    };
    let template = templates
        .create_template(authed(&caller, at_caps.clone()))
        .await
        .expect("exactly the caps are accepted")
        .into_inner()
        .template
        .unwrap();
    assert_eq!(template.allowed_ips.len(), caps.max_ip_entries.get());

    let over: [(&str, usize, pb::CreateTemplateRequest); 3] = [
        (
            "token_scopes",
            caps.max_scopes.get(),
            pb::CreateTemplateRequest {
                token_scopes: copies("wallet_view", caps.max_scopes.get() + 1),
                ..at_caps.clone()
            },
        ),
        (
            "allowed_ips",
            caps.max_ip_entries.get(),
            pb::CreateTemplateRequest {
                allowed_ips: hosts(0, caps.max_ip_entries.get() + 1),
                ..at_caps.clone()
            },
        ),
        (
            "token_limits.spending_limits",
            caps.max_spending_limits.get(),
            pb::CreateTemplateRequest {
                token_limits: limits(caps.max_spending_limits.get() + 1),
                ..at_caps.clone()
            },
        ),
    ];
    for (field, max, request) in over {
        let status = templates
            .create_template(authed(
                &caller,
                pb::CreateTemplateRequest {
                    name: format!("over {field}"),
                    ..request
                },
            ))
            .await
            .unwrap_err();
        assert_too_many(&status, field, max);
    }

    // UpdateTemplate: the template's lists and the mask's paths.
    let update = |template: pb::Template, paths: Vec<String>| pb::UpdateTemplateRequest {
        template: Some(template),
        update_mask: Some(FieldMask { paths }),
    };
    let status = templates
        .update_template(authed(
            &caller,
            update(
                pb::Template {
                    allowed_ips: hosts(1, caps.max_ip_entries.get() + 1),
                    ..template.clone()
                },
                vec!["allowed_ips".into()],
            ),
        ))
        .await
        .unwrap_err();
    assert_too_many(&status, "template.allowed_ips", caps.max_ip_entries.get());
    let status = templates
        .update_template(authed(
            &caller,
            update(
                template.clone(),
                copies("description", caps.max_mask_paths.get() + 1),
            ),
        ))
        .await
        .unwrap_err();
    assert_too_many(&status, "update_mask.paths", caps.max_mask_paths.get());
    let updated = templates
        .update_template(authed(
            &caller,
            update(
                pb::Template {
                    description: "changed".into(),
                    ..template
                },
                copies("description", caps.max_mask_paths.get()),
            ),
        ))
        .await
        .expect("a mask of exactly the cap is accepted")
        .into_inner()
        .template
        .unwrap();
    assert_eq!(
        (updated.description.as_str(), updated.version),
        ("changed", 2)
    );
}

#[tokio::test]
async fn update_mask_paths_and_required_scopes_over_their_caps_are_too_many_items() {
    let app = TestApp::spawn().await;
    let caps = RequestSettings::default();
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let token = client
        .create_token(authed(
            &caller,
            pb::CreateTokenRequest {
                label: "subject".into(),
                scopes: vec!["wallet_view".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let id = token.token.unwrap().id;

    let update = |paths: Vec<String>| pb::UpdateTokenRequest {
        id: id.clone(),
        label: "renamed".into(),
        description: String::new(),
        update_mask: Some(FieldMask { paths }),
    };
    let status = client
        .update_token(authed(
            &caller,
            update(copies("label", caps.max_mask_paths.get() + 1)),
        ))
        .await
        .unwrap_err();
    assert_too_many(&status, "update_mask.paths", caps.max_mask_paths.get());
    let renamed = client
        .update_token(authed(
            &caller,
            update(copies("label", caps.max_mask_paths.get())),
        ))
        .await
        .expect("a mask of exactly the cap is accepted")
        .into_inner();
    assert_eq!(renamed.token.unwrap().label, "renamed");

    let verify = |n: usize| pb::VerifyTokenRequest {
        token: token.raw_token.clone(),
        client_ip: String::new(),
        required_scopes: copies("wallet_view", n),
    };
    let status = client
        .verify_token(authed(&caller, verify(caps.max_scopes.get() + 1)))
        .await
        .unwrap_err();
    assert_too_many(&status, "required_scopes", caps.max_scopes.get());
    let answer = client
        .verify_token(authed(&caller, verify(caps.max_scopes.get())))
        .await
        .expect("exactly the cap is accepted")
        .into_inner();
    assert!(answer.active);
}

/// Caps come from the configuration.
#[tokio::test]
async fn caps_are_configurable() {
    let app = TestApp::spawn_with(|s| {
        s.requests.max_scopes = std::num::NonZeroUsize::new(2).expect("nonzero")
    })
    .await;
    let caller = app.manager("alice").await;
    let mut client = app.client().await;
    let request = |n: usize| pb::CreateTokenRequest {
        label: "x".into(),
        scopes: copies("wallet_view", n),
        ..Default::default()
    };
    client
        .create_token(authed(&caller, request(2)))
        .await
        .expect("two scopes are within a cap of two");
    let status = client
        .create_token(authed(&caller, request(3)))
        .await
        .unwrap_err();
    assert_too_many(&status, "scopes", 2);
}

/// Enough tokens at the caps (long description, 100 long IPv6 hosts, 100 long limits: ~17 KiB
/// each) that a page of 1000 would be over 4 MiB.
const LARGE_ITEMS: usize = 260;

/// Pages through a list with the largest page size, with a default client; every page must
/// decode (<= 4 MiB) and the first must end early. Returns the ids in list order.
async fn page_through<F, Fut>(mut list: F) -> Vec<String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<String>, usize, String), Status>>,
{
    let mut ids = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (page, encoded, next) = list(token).await.expect("every page decodes");
        assert!(encoded <= DEFAULT_CLIENT_LIMIT, "a {encoded}-byte page");
        if pages == 0 {
            assert!(
                !next.is_empty() && page.len() < LARGE_ITEMS,
                "the first page ends early ({} items)",
                page.len()
            );
            assert!(
                encoded > 3 * 1024 * 1024,
                "the first page is not cut needlessly short ({encoded} bytes)"
            );
        }
        pages += 1;
        ids.extend(page);
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert!(pages >= 2);
    ids
}

#[tokio::test]
async fn a_list_tokens_page_ends_before_a_default_client_would_refuse_it() {
    let app = TestApp::spawn().await;
    let caps = RequestSettings::default();
    let caller = app.manager("alice").await;
    let client = app.client().await;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (mut client, caller) = (client.clone(), caller.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for n in (worker..LARGE_ITEMS).step_by(8) {
                let request = pb::CreateTokenRequest {
                    label: format!("large {n}"),
                    description: "d".repeat(1000),
                    scopes: vec!["wallet_view".into()],
                    ip_restrict: hosts(n, caps.max_ip_entries.get()),
                    token_limits: limits(caps.max_spending_limits.get()),
                    ..Default::default()
                };
                let token = client.create_token(authed(&caller, request)).await.unwrap();
                ids.push(token.into_inner().token.unwrap().id);
            }
            ids
        });
    }
    let mut created: HashSet<String> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(created.len(), LARGE_ITEMS);

    let listed = page_through(|page_token| {
        let (mut client, caller) = (client.clone(), caller.clone());
        async move {
            let request = pb::ListTokensRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            };
            let page = client
                .list_tokens(authed(&caller, request))
                .await?
                .into_inner();
            let encoded = page.encoded_len();
            let ids = page.tokens.into_iter().map(|t| t.id).collect();
            Ok((ids, encoded, page.next_page_token))
        }
    })
    .await;
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(unique.len(), listed.len(), "no token is listed twice");
    assert_eq!(
        listed.len(),
        LARGE_ITEMS + 1,
        "every token, and the caller's"
    );
    created.retain(|id| !unique.contains(id));
    assert!(created.is_empty(), "never listed: {created:?}");
}

#[tokio::test]
async fn a_list_templates_page_ends_before_a_default_client_would_refuse_it() {
    let app = TestApp::spawn().await;
    let caps = RequestSettings::default();
    let caller = app.manager("alice").await;
    let templates = app.templates().await;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (mut templates, caller) = (templates.clone(), caller.clone());
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for n in (worker..LARGE_ITEMS).step_by(8) {
                let request = pb::CreateTemplateRequest {
                    name: format!("large {n}"),
                    description: "d".repeat(1000),
                    token_scopes: vec!["wallet_view".into()],
                    allowed_ips: hosts(n, caps.max_ip_entries.get()),
                    token_limits: limits(caps.max_spending_limits.get()),
                    ..Default::default()
                };
                let template = templates
                    .create_template(authed(&caller, request))
                    .await
                    .unwrap();
                ids.push(template.into_inner().template.unwrap().id);
            }
            ids
        });
    }
    let created: HashSet<String> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(created.len(), LARGE_ITEMS);

    let listed = page_through(|page_token| {
        let (mut templates, caller) = (templates.clone(), caller.clone());
        async move {
            let request = pb::ListTemplatesRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            };
            let page = templates
                .list_templates(authed(&caller, request))
                .await?
                .into_inner();
            let encoded = page.encoded_len();
            let ids = page.templates.into_iter().map(|t| t.id).collect();
            Ok((ids, encoded, page.next_page_token))
        }
    })
    .await;
    let unique: HashSet<String> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "no template is listed twice");
    assert_eq!(unique, created, "every template is listed");
}
