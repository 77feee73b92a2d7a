//! Donations and donation campaigns. Money is exact: integer minor units plus a [`Currency`].

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Payload;
use super::currency::Currency;
use super::limits::{AMOUNT_MAX_MINOR, PAYMENT_REF_MAX_CHARS};
use super::validate::{self as rule, Check, ValidationError};

/// `donation.made`: money given to an approach, a campaign or an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DonationMade {
    /// The approach, campaign or event receiving the donation.
    pub target_id: Uuid,
    /// 1..=10^12 minor units of `currency` (cents for EUR).
    #[schemars(range(min = 1, max = AMOUNT_MAX_MINOR))]
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: Currency,
    /// The payment provider's reference, 1..=128 printable ASCII characters; the ledger's
    /// idempotency key.
    #[schemars(length(min = 1, max = PAYMENT_REF_MAX_CHARS))]
    pub payment_ref: String,
}

impl Payload for DonationMade {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("target_id", &self.target_id)?;
        rule::amount("amount_minor", self.amount_minor)?;
        rule::currency("currency", &self.currency)?;
        payment_ref("payment_ref", &self.payment_ref)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.target_id]
    }
}

/// Printable ASCII (U+0020..=U+007E), not blank, at most [`PAYMENT_REF_MAX_CHARS`].
fn payment_ref(field: &str, s: &str) -> Check {
    if s.trim().is_empty() {
        return Err(ValidationError::at(
            "required",
            field,
            format!("`{field}` must not be empty"),
        ));
    }
    rule::max_chars(field, s, PAYMENT_REF_MAX_CHARS)?;
    if !s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(ValidationError::at(
            "invalid_value",
            field,
            format!("`{field}` may only hold printable ASCII characters"),
        ));
    }
    Ok(())
}

/// `campaign.created`: a donation drive for an approach or an event, open until `ends_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignCreated {
    /// The approach or event the campaign raises money for.
    pub target_id: Uuid,
    /// The goal, 1..=10^12 minor units of `currency`.
    #[schemars(range(min = 1, max = AMOUNT_MAX_MINOR))]
    pub goal_minor: i64,
    /// ISO 4217 code.
    pub currency: Currency,
    /// When the campaign closes; must be in the future.
    pub ends_at: DateTime<Utc>,
}

impl Payload for CampaignCreated {
    fn validate(&self, now: DateTime<Utc>) -> Check {
        rule::id("target_id", &self.target_id)?;
        rule::amount("goal_minor", self.goal_minor)?;
        rule::currency("currency", &self.currency)?;
        if self.ends_at <= now {
            return Err(ValidationError::at(
                "in_the_past",
                "ends_at",
                format!(
                    "`ends_at` ({}) must be after now ({})",
                    self.ends_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    now.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                ),
            ));
        }
        Ok(())
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.target_id]
    }
}

/// `campaign.closed`: the campaign stops taking donations early.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignClosed {
    /// The campaign being closed.
    pub campaign_id: Uuid,
}

impl Payload for CampaignClosed {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("campaign_id", &self.campaign_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.campaign_id]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_refs() {
        let code = |s: &str| payment_ref("payment_ref", s).err().map(|e| e.code);
        assert_eq!(code("pi_3Nk Ab-9"), None);
        assert_eq!(code(""), Some("required"));
        assert_eq!(code("   "), Some("required"));
        assert_eq!(code("ré"), Some("invalid_value"));
        assert_eq!(code("a\tb"), Some("invalid_value"));
        assert_eq!(code(&"x".repeat(129)), Some("too_long"));
        assert_eq!(code(&"x".repeat(128)), None);
    }
}
