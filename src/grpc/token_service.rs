//! `tokenmint.v1.TokenService` handlers.

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::domain::{ChangeCursor, StatusListId, TokenId, scope};
use crate::error::{Error, reason};
use crate::grpc::bounds::RequestBounds;
use crate::grpc::observe::{record_template, record_token};
use crate::grpc::rendered::RenderedTokens;
use crate::grpc::{auth, convert, headers, request_id, requests, status::to_status};
use crate::issuance::change_stream::StreamCaller;
use crate::issuance::lifecycle::Action;
use crate::issuance::{TokenCore, Verification};
use crate::proto::v1::{self as pb, token_service_server::TokenService};
use crate::proto::wire;
use crate::telemetry::Metrics;

/// The TokenService implementation.
#[derive(Clone)]
pub struct TokenApi {
    core: TokenCore,
    metrics: Arc<Metrics>,
    rendered: Arc<RenderedTokens>,
    bounds: RequestBounds,
}

impl TokenApi {
    /// Serves `core`, counting mints, verifications and revocations in `metrics`; VerifyToken
    /// keeps the encoded metadata of up to `rendered_capacity` tokens. Requests whose repeated
    /// fields exceed `bounds` are refused first.
    pub fn new(
        core: TokenCore,
        metrics: Arc<Metrics>,
        rendered_capacity: usize,
        bounds: RequestBounds,
    ) -> Self {
        Self {
            core,
            metrics,
            rendered: Arc::new(RenderedTokens::new(rendered_capacity)),
            bounds,
        }
    }

    /// Authenticates a token-management call (scope `user_manage`).
    async fn manager<T>(&self, request: &Request<T>) -> Result<crate::issuance::Caller, Error> {
        auth::caller_with_scope(&self.core.authenticator, request, scope::USER_MANAGE).await
    }

    async fn lifecycle(
        &self,
        request: Request<String>,
        action: Action,
    ) -> Result<pb::Token, Status> {
        let rid = request_id::of(&request);
        let result = async {
            let caller = self.manager(&request).await?;
            let id = TokenId::parse(request.get_ref(), "id")?;
            record_token(id);
            self.core.manager.transition(&caller, id, action).await
        }
        .await;
        if result.is_ok() && action == Action::Revoke {
            self.metrics.revoked();
        }
        result
            .map(|t| convert::token_to_proto(&t, self.core.manager.expiry_clock()))
            .map_err(|e| to_status(e, &rid))
    }
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            self.bounds.create_token(request.get_ref())?;
            let caller = self.manager(&request).await?;
            let minter = &self.core.minter;
            let request = requests::mint_request(
                request.into_inner(),
                minter.catalog(),
                minter.max_lifetime_secs(),
            )?;
            if let Some(id) = request.template {
                record_template(id);
            }
            minter.create(&caller, request).await
        }
        .await;
        self.metrics.minted(match &result {
            Ok(_) => "minted",
            Err(error) => error.reason,
        });
        let minted = result.map_err(|e| to_status(e, &rid))?;
        record_token(minted.record.id);
        let mut response = Response::new(pb::CreateTokenResponse {
            token: Some(convert::token_to_proto(
                &minted.record,
                self.core.manager.expiry_clock(),
            )),
            raw_token: minted.raw.expose().to_owned(),
        });
        headers::announce_deprecated_scopes(&mut response, &minted.deprecated_scopes);
        Ok(response)
    }

    async fn get_token(
        &self,
        request: Request<pb::GetTokenRequest>,
    ) -> Result<Response<pb::GetTokenResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            let caller = self.manager(&request).await?;
            let id = TokenId::parse(&request.get_ref().id, "id")?;
            record_token(id);
            self.core.manager.get(&caller, id).await
        }
        .await;
        let token = result.map_err(|e| to_status(e, &rid))?;
        Ok(Response::new(pb::GetTokenResponse {
            token: Some(convert::token_to_proto(
                &token,
                self.core.manager.expiry_clock(),
            )),
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            let caller = self.manager(&request).await?;
            let req = request.get_ref();
            let status = convert::status_filter_from_proto(req.status).map_err(|n| {
                Error::invalid(
                    "status",
                    reason::INVALID_FILTER,
                    format!("{n} is not a TokenStatus value"),
                )
            })?;
            let parent = match req.parent_id.as_str() {
                "" => None,
                raw => Some(TokenId::parse(raw, "parent_id")?),
            };
            self.core
                .manager
                .list(&caller, req.page_size, &req.page_token, status, parent)
                .await
        }
        .await;
        let page = result.map_err(|e| to_status(e, &rid))?;
        let now = self.core.manager.expiry_clock();
        let (tokens, next_page_token) = convert::fit_page(
            &page.tokens,
            convert::MAX_PAGE_BYTES,
            page.next_page_token,
            |t| convert::token_to_proto(t, now),
            |t| page.resume.after(t.created_at, &t.id.to_string()),
        );
        Ok(Response::new(pb::ListTokensResponse {
            tokens,
            next_page_token,
        }))
    }

    async fn update_token(
        &self,
        request: Request<pb::UpdateTokenRequest>,
    ) -> Result<Response<pb::UpdateTokenResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            self.bounds.update_token(request.get_ref())?;
            let caller = self.manager(&request).await?;
            let req = request.get_ref();
            let id = TokenId::parse(&req.id, "id")?;
            record_token(id);
            let update = requests::token_update(req)?;
            self.core.manager.update(&caller, id, update).await
        }
        .await;
        let token = result.map_err(|e| to_status(e, &rid))?;
        Ok(Response::new(pb::UpdateTokenResponse {
            token: Some(convert::token_to_proto(
                &token,
                self.core.manager.expiry_clock(),
            )),
        }))
    }

    async fn suspend_token(
        &self,
        request: Request<pb::SuspendTokenRequest>,
    ) -> Result<Response<pb::SuspendTokenResponse>, Status> {
        let token = self
            .lifecycle(request.map(|r| r.id), Action::Suspend)
            .await?;
        Ok(Response::new(pb::SuspendTokenResponse {
            token: Some(token),
        }))
    }

    async fn activate_token(
        &self,
        request: Request<pb::ActivateTokenRequest>,
    ) -> Result<Response<pb::ActivateTokenResponse>, Status> {
        let token = self
            .lifecycle(request.map(|r| r.id), Action::Activate)
            .await?;
        Ok(Response::new(pb::ActivateTokenResponse {
            token: Some(token),
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        if !request.get_ref().cascade {
            let token = self
                .lifecycle(request.map(|r| r.id), Action::Revoke)
                .await?;
            return Ok(Response::new(pb::RevokeTokenResponse {
                token: Some(token),
                descendants_revoked: 0,
            }));
        }
        let rid = request_id::of(&request);
        let result = async {
            let caller = self.manager(&request).await?;
            let id = TokenId::parse(&request.get_ref().id, "id")?;
            record_token(id);
            self.core.manager.revoke_tree(&caller, id).await
        }
        .await;
        let (token, descendants) = result.map_err(|e| to_status(e, &rid))?;
        self.metrics.revoked();
        Ok(Response::new(pb::RevokeTokenResponse {
            token: Some(convert::token_to_proto(
                &token,
                self.core.manager.expiry_clock(),
            )),
            descendants_revoked: i64::try_from(descendants).unwrap_or(i64::MAX),
        }))
    }

    async fn delete_token(
        &self,
        request: Request<pb::DeleteTokenRequest>,
    ) -> Result<Response<pb::DeleteTokenResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            let caller = self.manager(&request).await?;
            let id = TokenId::parse(&request.get_ref().id, "id")?;
            record_token(id);
            self.core.manager.delete(&caller, id).await
        }
        .await;
        result.map_err(|e| to_status(e, &rid))?;
        Ok(Response::new(pb::DeleteTokenResponse {}))
    }

    async fn verify_token(
        &self,
        request: Request<pb::VerifyTokenRequest>,
    ) -> Result<Response<wire::VerifyTokenResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            self.bounds.verify_token(request.get_ref())?;
            auth::caller_with_scope(&self.core.authenticator, &request, scope::TOKEN_INTROSPECT)
                .await?;
            let req = request.get_ref();
            self.core
                .introspector
                .verify(&req.token, &req.client_ip, &req.required_scopes)
                .await
        }
        .await;
        self.metrics.verified(match &result {
            Ok(Verification::Active(_)) => "active",
            Ok(Verification::Inactive(why)) => why.as_str(),
            Err(error) => error.reason,
        });
        let response = match result.map_err(|e| to_status(e, &rid))? {
            Verification::Active(record) => {
                record_token(&record.id);
                let now = self.core.manager.expiry_clock();
                wire::VerifyTokenResponse::active_encoded(self.rendered.encoded(&record, now))
            }
            Verification::Inactive(why) => {
                wire::VerifyTokenResponse::inactive(convert::reason_to_proto(why))
            }
        };
        Ok(Response::new(response))
    }

    async fn list_scopes(
        &self,
        request: Request<pb::ListScopesRequest>,
    ) -> Result<Response<pb::ListScopesResponse>, Status> {
        let rid = request_id::of(&request);
        auth::caller(&self.core.authenticator, &request)
            .await
            .map_err(|e| to_status(e, &rid))?;
        let scopes = self
            .core
            .catalog
            .entries()
            .iter()
            .map(|s| pb::Scope {
                name: s.name.clone(),
                description: s.description.clone(),
                deprecated: s.deprecated,
            })
            .collect();
        Ok(Response::new(pb::ListScopesResponse { scopes }))
    }

    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        let ring = self.core.keys.ring();
        let keys = ring
            .verifying_keys()
            .map(|k| {
                let jwk = k.to_jwk();
                pb::Jwk {
                    kty: jwk.kty,
                    crv: jwk.crv,
                    x: jwk.x,
                    y: jwk.y,
                    kid: jwk.kid,
                    alg: jwk.alg,
                    r#use: jwk.use_,
                }
            })
            .collect();
        Ok(Response::new(pb::GetJwksResponse {
            keys,
            key_set_version: ring.version(),
        }))
    }

    async fn get_status_list(
        &self,
        request: Request<pb::GetStatusListRequest>,
    ) -> Result<Response<pb::GetStatusListResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            let raw = &request.get_ref().list_id;
            let id = StatusListId::parse(raw).ok_or_else(|| {
                Error::invalid(
                    "list_id",
                    reason::INVALID_ID,
                    "list_id must be a status list id: the last segment of a token's status \
                     list URI, 22 characters of base64url",
                )
            })?;
            self.core.status_lists.get(&id).await
        }
        .await;
        let signed = result.map_err(|e| to_status(e, &rid))?;
        Ok(Response::new(pb::GetStatusListResponse {
            status_list_token: signed.token.to_string(),
            ttl_seconds: signed.ttl_secs,
        }))
    }

    type WatchTokenChangesStream = ReceiverStream<Result<pb::WatchTokenChangesResponse, Status>>;

    async fn watch_token_changes(
        &self,
        request: Request<pb::WatchTokenChangesRequest>,
    ) -> Result<Response<Self::WatchTokenChangesStream>, Status> {
        let rid = request_id::of(&request);
        let opened = async {
            let caller = auth::caller_with_scope(
                &self.core.authenticator,
                &request,
                scope::TOKEN_INTROSPECT,
            )
            .await?;
            let raw = &request.get_ref().cursor;
            let from = if raw.is_empty() {
                None
            } else {
                Some(ChangeCursor::parse(raw).ok_or_else(|| {
                    Error::invalid(
                        "cursor",
                        reason::INVALID_CURSOR,
                        "cursor must be empty (from now) or a cursor from an earlier \
                         WatchTokenChanges response",
                    )
                })?)
            };
            let watch = self.core.changes.watch(from).await?;
            // The operator CLI (no token) never calls over gRPC; a token caller always has one.
            Ok(match caller.token.as_deref() {
                Some(token) => watch.bound_to(StreamCaller {
                    token_id: token.id,
                    expires_at: token.exp,
                })?,
                None => watch,
            })
        }
        .await;
        let mut watch = opened.map_err(|e: Error| to_status(e, &rid))?;
        // Small: a client that stops reading leaves the feed's updates unread in the watch,
        // where falling too far behind ends the stream.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let stalled_client = watch.stalled_client();
        let keys = self.core.keys.clone();
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    item = watch.next() => item,
                    // The client went away: free the stream's slot now.
                    () = sender.closed() => break,
                };
                let ended = item.is_err();
                let message = item
                    .map(|item| convert::watch_item_to_proto(item, keys.ring().version()))
                    .map_err(|e| to_status(e, &rid));
                // A client that stops reading (HTTP/2 flow control holds the messages) is cut
                // off like one that falls behind: it resumes from its last cursor.
                let sent = tokio::time::timeout(stalled_client, sender.send(message)).await;
                if !matches!(sent, Ok(Ok(()))) || ended {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}
