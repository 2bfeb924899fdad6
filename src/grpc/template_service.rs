//! `tokenmint.v1.TemplateService` handlers.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::domain::{EnterpriseId, TemplateId, scope};
use crate::error::{Error, reason};
use crate::grpc::bounds::RequestBounds;
use crate::grpc::observe::record_template;
use crate::grpc::{auth, convert, headers, request_id, requests, status::to_status};
use crate::issuance::templates::TemplateManager;
use crate::issuance::{Authenticator, Caller};
use crate::proto::v1::{self as pb, template_service_server::TemplateService};

/// The TemplateService implementation.
#[derive(Clone)]
pub struct TemplateApi {
    authenticator: Arc<Authenticator>,
    templates: Arc<TemplateManager>,
    bounds: RequestBounds,
}

impl TemplateApi {
    /// Serves `templates`, authenticating callers through `authenticator`. Requests whose repeated
    /// fields exceed `bounds` are refused first.
    pub fn new(
        authenticator: Arc<Authenticator>,
        templates: Arc<TemplateManager>,
        bounds: RequestBounds,
    ) -> Self {
        Self {
            authenticator,
            templates,
            bounds,
        }
    }

    /// Authenticates a template call (scope `user_manage`).
    async fn manager<T>(&self, request: &Request<T>) -> Result<Caller, Error> {
        auth::caller_with_scope(&self.authenticator, request, scope::USER_MANAGE).await
    }
}

#[tonic::async_trait]
impl TemplateService for TemplateApi {
    async fn create_template(
        &self,
        request: Request<pb::CreateTemplateRequest>,
    ) -> Result<Response<pb::CreateTemplateResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            self.bounds.create_template(request.get_ref())?;
            let caller = self.manager(&request).await?;
            let fields = requests::template_fields(
                request.get_ref(),
                self.templates.catalog(),
                self.templates.max_lifetime_secs(),
            )?;
            self.templates.create(&caller, fields).await
        }
        .await;
        let saved = result.map_err(|e| to_status(e, &rid))?;
        record_template(saved.record.id);
        let mut response = Response::new(pb::CreateTemplateResponse {
            template: Some(convert::template_to_proto(&saved.record)),
        });
        headers::announce_deprecated_scopes(&mut response, &saved.deprecated_scopes);
        Ok(response)
    }

    async fn get_template(
        &self,
        request: Request<pb::GetTemplateRequest>,
    ) -> Result<Response<pb::GetTemplateResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            let caller = self.manager(&request).await?;
            let id = TemplateId::parse(&request.get_ref().id, "id")?;
            record_template(id);
            self.templates.owned(&caller, id).await
        }
        .await;
        let template = result.map_err(|e| to_status(e, &rid))?;
        Ok(Response::new(pb::GetTemplateResponse {
            template: Some(convert::template_to_proto(&template)),
        }))
    }

    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            let caller = self.manager(&request).await?;
            let req = request.get_ref();
            let enterprise = EnterpriseId::parse_optional(&req.enterprise_id, "enterprise_id")?;
            self.templates
                .list(&caller, req.page_size, &req.page_token, enterprise)
                .await
        }
        .await;
        let page = result.map_err(|e| to_status(e, &rid))?;
        let (templates, next_page_token) = convert::fit_page(
            &page.templates,
            convert::MAX_PAGE_BYTES,
            page.next_page_token,
            convert::template_to_proto,
            |t| page.resume.after(t.created_at, &t.id.to_string()),
        );
        Ok(Response::new(pb::ListTemplatesResponse {
            templates,
            next_page_token,
        }))
    }

    async fn update_template(
        &self,
        request: Request<pb::UpdateTemplateRequest>,
    ) -> Result<Response<pb::UpdateTemplateResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            self.bounds.update_template(request.get_ref())?;
            let caller = self.manager(&request).await?;
            let req = request.into_inner();
            let template = req.template.ok_or_else(|| {
                Error::invalid(
                    "template",
                    reason::TEMPLATE_REQUIRED,
                    "template is required (with its id and the new values)",
                )
            })?;
            let id = TemplateId::parse(&template.id, "template.id")?;
            record_template(id);
            let patch = requests::template_patch(
                &template,
                req.update_mask.as_ref(),
                self.templates.catalog(),
                self.templates.max_lifetime_secs(),
            )?;
            self.templates
                .update(&caller, id, patch, template.version)
                .await
        }
        .await;
        let saved = result.map_err(|e| to_status(e, &rid))?;
        let mut response = Response::new(pb::UpdateTemplateResponse {
            template: Some(convert::template_to_proto(&saved.record)),
        });
        headers::announce_deprecated_scopes(&mut response, &saved.deprecated_scopes);
        Ok(response)
    }

    async fn delete_template(
        &self,
        request: Request<pb::DeleteTemplateRequest>,
    ) -> Result<Response<pb::DeleteTemplateResponse>, Status> {
        let rid = request_id::of(&request);
        let result = async {
            let caller = self.manager(&request).await?;
            let id = TemplateId::parse(&request.get_ref().id, "id")?;
            record_template(id);
            self.templates.delete(&caller, id).await
        }
        .await;
        result.map_err(|e| to_status(e, &rid))?;
        Ok(Response::new(pb::DeleteTemplateResponse {}))
    }
}
