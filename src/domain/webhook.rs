//! Webhook subscriptions: brand state, created and deleted through the WAL like any
//! other brand change. Delivery (queues, retries, signatures) lives in `crate::webhooks`;
//! this module only decides and applies the subscription changes.
//!
//! The signing secret is part of the state and of the WAL record: deliveries are
//! signed with it (Standard Webhooks), so it must be kept in a form that can sign.
//! It is shown to the brand once, on creation, and never printed by `Debug`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::brand::BrandState;
use super::error::{ErrorCode, Rejection};
use super::event::Event;
use super::{Id, Timestamp};

/// Most subscriptions per brand.
pub const WEBHOOKS_PER_BRAND_MAX: usize = 16;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: Id,
    pub url: String,
    /// Feed event types delivered to this endpoint.
    pub events: Vec<String>,
    /// `whsec_<base64>`: the Standard Webhooks form of the signing key.
    pub secret: String,
    pub created_at: Timestamp,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A command on a brand's subscriptions.
#[derive(Debug)]
pub enum WebhookCmd {
    Create(Box<Webhook>),
    List,
    Get { id: Id },
    Delete { id: Id },
}

impl WebhookCmd {
    pub fn is_read(&self) -> bool {
        matches!(self, WebhookCmd::List | WebhookCmd::Get { .. })
    }
}

impl BrandState {
    pub fn webhook(&self, id: &Id) -> Result<&Webhook, Rejection> {
        self.webhooks.get(id).ok_or_else(|| Rejection::not_found(format!("webhook {id} does not exist in brand {}", self.id)))
    }

    pub fn decide_create_webhook(&self, w: &Webhook) -> Result<Event, Rejection> {
        if self.webhooks.contains_key(&w.id) {
            return Err(Rejection::new(ErrorCode::AlreadyExists, format!("webhook {} already exists", w.id)));
        }
        if self.webhooks.len() >= WEBHOOKS_PER_BRAND_MAX {
            return Err(Rejection::new(
                ErrorCode::Unprocessable,
                format!("a brand may have at most {WEBHOOKS_PER_BRAND_MAX} webhooks; delete one first"),
            ));
        }
        Ok(Event::WebhookCreated { webhook: Box::new(w.clone()) })
    }

    pub fn decide_delete_webhook(&self, id: &Id) -> Result<Event, Rejection> {
        self.webhook(id)?;
        Ok(Event::WebhookDeleted { id: id.clone() })
    }

    /// Applies a subscription event (the webhook arm of `apply`).
    pub(super) fn apply_webhook_event(&mut self, ev: &Event) -> Result<(), String> {
        match ev {
            Event::WebhookCreated { webhook } => {
                if self.webhooks.insert(webhook.id.clone(), webhook.as_ref().clone()).is_some() {
                    return Err(format!("webhook {} created twice", webhook.id));
                }
            }
            Event::WebhookDeleted { id } => {
                self.webhooks.remove(id).ok_or_else(|| format!("deleted webhook {id} does not exist"))?;
            }
            other => return Err(format!("{} is not a webhook event", other.type_name())),
        }
        Ok(())
    }
}

/// How a subscription is shown: never with its secret, except on creation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: Id,
    pub url: String,
    pub events: Vec<String>,
    #[serde(with = "super::time::rfc3339")]
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookView {
    pub fn new(w: &Webhook, with_secret: bool) -> Self {
        WebhookView {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            created_at: w.created_at,
            secret: with_secret.then(|| w.secret.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BrandId;

    fn hook(id: &str) -> Webhook {
        Webhook {
            id: Id::parse(id).unwrap(),
            url: "https://example.com/hook".into(),
            events: vec!["stock.changed".into()],
            secret: "whsec_c2VjcmV0".into(),
            created_at: Timestamp(1),
        }
    }

    #[test]
    fn create_list_delete_and_the_bound() {
        let mut b = BrandState::new(BrandId::parse("b1").unwrap(), "B".into(), Timestamp(0));
        for i in 0..WEBHOOKS_PER_BRAND_MAX {
            let ev = b.decide_create_webhook(&hook(&format!("wh{i}"))).unwrap();
            b.apply_webhook_event(&ev).unwrap();
        }
        let over = b.decide_create_webhook(&hook("one-more")).unwrap_err();
        assert_eq!(over.code, ErrorCode::Unprocessable);
        assert_eq!(b.decide_create_webhook(&hook("wh0")).unwrap_err().code, ErrorCode::AlreadyExists);
        let ev = b.decide_delete_webhook(&Id::parse("wh0").unwrap()).unwrap();
        b.apply_webhook_event(&ev).unwrap();
        assert_eq!(b.decide_delete_webhook(&Id::parse("wh0").unwrap()).unwrap_err().code, ErrorCode::NotFound);
        assert!(b.decide_create_webhook(&hook("one-more")).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = format!("{:?}", hook("wh1"));
        assert!(!s.contains("c2VjcmV0"), "{s}");
        let v = serde_json::to_string(&WebhookView::new(&hook("wh1"), false)).unwrap();
        assert!(!v.contains("secret"), "{v}");
    }
}
