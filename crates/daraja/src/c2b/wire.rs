//! The C2B bodies as they arrive: every field a string, a number or `null`, kept as text.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};

#[derive(Deserialize)]
pub(super) struct Payment<'a> {
    #[serde(rename = "TransactionType", borrow, default)]
    pub transaction_type: Text<'a>,
    #[serde(rename = "TransID", borrow)]
    pub trans_id: Text<'a>,
    #[serde(rename = "TransTime", borrow)]
    pub trans_time: Text<'a>,
    #[serde(rename = "TransAmount", borrow)]
    pub amount: Text<'a>,
    #[serde(rename = "BusinessShortCode", borrow)]
    pub business_short_code: Text<'a>,
    #[serde(rename = "BillRefNumber", borrow, default)]
    pub bill_ref_number: Text<'a>,
    #[serde(rename = "InvoiceNumber", borrow, default)]
    pub invoice_number: Text<'a>,
    #[serde(rename = "OrgAccountBalance", borrow, default)]
    pub org_account_balance: Text<'a>,
    #[serde(rename = "ThirdPartyTransID", borrow, default)]
    pub third_party_trans_id: Text<'a>,
    #[serde(rename = "MSISDN", borrow, default)]
    pub msisdn: Text<'a>,
    #[serde(rename = "FirstName", borrow, default)]
    pub first_name: Text<'a>,
    #[serde(rename = "MiddleName", borrow, default)]
    pub middle_name: Text<'a>,
    #[serde(rename = "LastName", borrow, default)]
    pub last_name: Text<'a>,
}

#[derive(Deserialize)]
pub(super) struct Answer<'a> {
    #[serde(rename = "ResultCode", borrow)]
    pub result_code: Text<'a>,
}

/// A scalar as text: strings as they are, numbers in decimal, `null` as empty. Arrays and
/// objects are refused.
#[derive(Default)]
pub(crate) struct Text<'a>(Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Text<'a>, E> {
                Ok(Text::default())
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}
