//! [`Currency`]: an ISO 4217 alphabetic code.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// An ISO 4217 alphabetic currency code such as `"EUR"`.
///
/// Decoding accepts any string (so a client sees `invalid_currency` with the field path rather
/// than a generic decode error); [`Currency::is_active`] — checked by `validate` — accepts exactly
/// the codes in [`Currency::ACTIVE`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    /// Active ISO 4217 codes of circulating currencies, sorted (checked by a test).
    ///
    /// Hand-written rather than pulled from a crate because the list is small and stable (a
    /// code or two change per year). Last reviewed against the ISO 4217 amendments up to 2025:
    /// `XCG` replaced `ANG`, `ZWG` replaced `ZWL`, `SLE` replaced `SLL`, `HRK` and `CUC` are gone;
    /// `BGN` stays until it is withdrawn from the list. Fund codes (`BOV`, `CHE`,
    /// `CHW`, `CLF`, `COU`, `MXV`, `USN`, `UYI`, `UYW`), precious metals (`XAU`, `XAG`, `XPD`,
    /// `XPT`), bond-market units (`XBA`–`XBD`), `XDR`, `XSU`, `XUA`, `XTS` and `XXX` are left out
    /// on purpose: nobody donates or is paid in them.
    pub const ACTIVE: &'static [&'static str] = &[
        "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN",
        "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
        "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP",
        "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD",
        "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY",
        "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD",
        "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK",
        "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK",
        "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG",
        "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS",
        "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED",
        "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
    ];

    /// Wraps a code without checking it; `validate` does.
    pub fn new(code: impl Into<String>) -> Self {
        Self(code.into())
    }

    /// The code as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of [`Currency::ACTIVE`] (three uppercase ASCII letters, exactly).
    pub fn is_active(&self) -> bool {
        Self::ACTIVE.binary_search(&self.0.as_str()).is_ok()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Currency {
    fn schema_name() -> Cow<'static, str> {
        "Currency".into()
    }

    fn schema_id() -> Cow<'static, str> {
        concat!(module_path!(), "::Currency").into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "An active ISO 4217 alphabetic currency code, e.g. \"EUR\".",
            "pattern": "^[A-Z]{3}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_list_is_sorted_unique_and_well_formed() {
        let list = Currency::ACTIVE;
        assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        assert!(
            list.iter()
                .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    #[test]
    fn membership() {
        for ok in ["EUR", "USD", "JPY", "CHF", "XCG", "ZWG"] {
            assert!(Currency::new(ok).is_active(), "{ok}");
        }
        for bad in [
            "", "eur", "EURO", "EU", "XXX", "XAU", "ANG", "HRK", "€", "E U",
        ] {
            assert!(!Currency::new(bad).is_active(), "{bad}");
        }
    }

    #[test]
    fn transparent_on_the_wire() {
        let c: Currency = serde_json::from_str("\"EUR\"").unwrap();
        assert_eq!(c.as_str(), "EUR");
        assert_eq!(serde_json::to_string(&c).unwrap(), "\"EUR\"");
    }
}
