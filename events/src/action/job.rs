//! Job offers: sent (to one user or openly), answered, withdrawn.

use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use super::Payload;
use super::currency::Currency;
use super::limits::{
    AMOUNT_MAX_MINOR, DESCRIPTION_MAX_CHARS, SKILL_MAX_CHARS, SKILLS_MAX, TITLE_MAX_CHARS,
};
use super::validate::{self as rule, Check, Lines, ValidationError};

/// What a salary band is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SalaryPeriod {
    /// Per year.
    Year,
    /// Per month.
    Month,
    /// Per hour.
    Hour,
}

/// A salary range, `min_minor ..= max_minor` minor units of `currency` per `period`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SalaryBand {
    /// Lower bound, 1..=10^12 minor units.
    #[schemars(range(min = 1, max = AMOUNT_MAX_MINOR))]
    pub min_minor: i64,
    /// Upper bound, `min_minor..=10^12` minor units.
    #[schemars(range(min = 1, max = AMOUNT_MAX_MINOR))]
    pub max_minor: i64,
    /// ISO 4217 code.
    pub currency: Currency,
    /// What the amounts are per.
    pub period: SalaryPeriod,
}

impl SalaryBand {
    /// Checks the band; `field` is its own path (`salary_band`).
    fn validate(&self, field: &str) -> Check {
        rule::amount(&format!("{field}.min_minor"), self.min_minor)?;
        let max_field = format!("{field}.max_minor");
        rule::amount(&max_field, self.max_minor)?;
        if self.min_minor > self.max_minor {
            return Err(ValidationError::at(
                "invalid_value",
                &max_field,
                format!("`{max_field}` must not be below `{field}.min_minor`"),
            ));
        }
        rule::currency(&format!("{field}.currency"), &self.currency)
    }
}

/// `job_offer.created`: an offer to one user (`to_user_id`) or an open one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobOfferCreated {
    /// The user the offer is sent to; absent for an open offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_user_id: Option<Uuid>,
    /// One line, 1..=200 characters.
    #[schemars(length(min = 1, max = TITLE_MAX_CHARS))]
    pub title: String,
    /// 1..=10 000 characters.
    #[schemars(length(min = 1, max = DESCRIPTION_MAX_CHARS))]
    pub description: String,
    /// Up to 50 distinct skills, 1..=50 characters each. May be left out.
    #[serde(default)]
    #[schemars(length(max = SKILLS_MAX), inner(length(min = 1, max = SKILL_MAX_CHARS)))]
    pub skills: Vec<String>,
    /// The pay, when disclosed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "object_only"
    )]
    pub salary_band: Option<SalaryBand>,
}

impl Payload for JobOfferCreated {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::opt_id("to_user_id", self.to_user_id.as_ref())?;
        rule::text("title", &self.title, TITLE_MAX_CHARS, Lines::Single)?;
        rule::text(
            "description",
            &self.description,
            DESCRIPTION_MAX_CHARS,
            Lines::Multi,
        )?;
        rule::skills("skills", &self.skills)?;
        self.salary_band
            .as_ref()
            .map_or(Ok(()), |b| b.validate("salary_band"))
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        self.to_user_id.into_iter().collect()
    }
}

/// Deserialises an optional struct from a JSON object only: serde's derived structs also accept
/// a positional array (`[1, 2, "EUR", "year"]`), which the published schema does not allow.
fn object_only<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }

    deserializer.deserialize_option(ObjectVisitor(PhantomData))
}

/// The recipient's answer to a job offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OfferAnswer {
    /// Yes.
    Accepted,
    /// No.
    Declined,
}

/// `job_offer.answered`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobOfferAnswered {
    /// The offer answered.
    pub offer_id: Uuid,
    /// The answer.
    pub answer: OfferAnswer,
}

impl Payload for JobOfferAnswered {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("offer_id", &self.offer_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.offer_id]
    }
}

/// `job_offer.withdrawn`: the sender takes the offer back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobOfferWithdrawn {
    /// The offer withdrawn.
    pub offer_id: Uuid,
}

impl Payload for JobOfferWithdrawn {
    fn validate(&self, _now: DateTime<Utc>) -> Check {
        rule::id("offer_id", &self.offer_id)
    }

    fn referenced_ids(&self) -> Vec<Uuid> {
        vec![self.offer_id]
    }
}
