//! Who is being paid: a paybill or a till, with its passkey.
//!
//! Daraja's pairing rules (reference §2.1, FAQ 10) are encoded in the type so that a wrong
//! pairing cannot be built:
//! - paybill: `TransactionType = CustomerPayBillOnline`, `BusinessShortCode = PartyB = paybill`;
//! - till: `TransactionType = CustomerBuyGoodsOnline`, `BusinessShortCode` = the store (head
//!   office) number that owns the passkey, `PartyB` = the till number.

use std::fmt;

use crate::secret::Secret;
use crate::validation::{InvalidField, excerpt};

fn digits(field: &'static str, input: &str) -> Result<u32, InvalidField> {
    let s = input.trim();
    if !(5..=7).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return Err(InvalidField::new(
            field,
            format!("\"{}\" is not a shortcode; expected 5 to 7 digits such as 174379", excerpt(s)),
        ));
    }
    s.parse().map_err(|_| InvalidField::new(field, "not a number"))
}

/// A business shortcode (paybill, or the store/head-office number of a till), 5–7 digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortCode(u32);

impl ShortCode {
    /// Parses 5–7 digits without a leading zero.
    pub fn parse(input: &str) -> Result<Self, InvalidField> {
        digits("BusinessShortCode", input).map(Self)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A Buy Goods till number, 5–7 digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TillNumber(u32);

impl TillNumber {
    /// Parses 5–7 digits without a leading zero.
    pub fn parse(input: &str) -> Result<Self, InvalidField> {
        digits("PartyB", input).map(Self)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }
}

macro_rules! numeric_display {
    ($($t:ident),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), self.0)
            }
        }
    )*};
}
numeric_display!(ShortCode, TillNumber);

/// The Lipa na M-Pesa Online passkey of a shortcode. A [`Secret`]: never shown, never defaulted.
pub type Passkey = Secret;

/// The two kinds of M-Pesa business account an STK push can pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// A paybill: the shortcode is both `BusinessShortCode` and `PartyB`.
    Paybill(ShortCode),
    /// A till: `BusinessShortCode` is the store number, `PartyB` the till.
    Till {
        /// The store (head office) number that owns the passkey.
        store: ShortCode,
        /// The till number that receives the money.
        till: TillNumber,
    },
}

/// A business that receives STK payments: its account and the passkey of its shortcode.
#[derive(Debug, Clone)]
pub struct Merchant {
    account: Account,
    passkey: Passkey,
}

impl Merchant {
    /// A paybill merchant.
    pub fn paybill(shortcode: ShortCode, passkey: Passkey) -> Self {
        Self { account: Account::Paybill(shortcode), passkey }
    }

    /// A till (Buy Goods) merchant: `store` owns the passkey, `till` receives the money.
    pub fn till(store: ShortCode, till: TillNumber, passkey: Passkey) -> Self {
        Self { account: Account::Till { store, till }, passkey }
    }

    /// The account kind.
    pub fn account(&self) -> Account {
        self.account
    }

    /// `BusinessShortCode` on the wire; also the shortcode inside the password.
    pub fn business_short_code(&self) -> ShortCode {
        match self.account {
            Account::Paybill(code) => code,
            Account::Till { store, .. } => store,
        }
    }

    /// `PartyB` on the wire.
    pub fn party_b(&self) -> u32 {
        match self.account {
            Account::Paybill(code) => code.get(),
            Account::Till { till, .. } => till.get(),
        }
    }

    /// `TransactionType` on the wire.
    pub fn transaction_type(&self) -> &'static str {
        match self.account {
            Account::Paybill(_) => "CustomerPayBillOnline",
            Account::Till { .. } => "CustomerBuyGoodsOnline",
        }
    }

    pub(crate) fn passkey(&self) -> &Passkey {
        &self.passkey
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paybill_and_till_pairings() {
        let pk = Secret::new("pk");
        let paybill = Merchant::paybill(ShortCode::parse("174379").unwrap(), pk.clone());
        assert_eq!(paybill.transaction_type(), "CustomerPayBillOnline");
        assert_eq!(paybill.party_b(), 174379);
        assert_eq!(paybill.business_short_code().get(), 174379);

        let till = Merchant::till(ShortCode::parse("5123456").unwrap(), TillNumber::parse("654321").unwrap(), pk);
        assert_eq!(till.transaction_type(), "CustomerBuyGoodsOnline");
        assert_eq!(till.party_b(), 654321);
        assert_eq!(till.business_short_code().get(), 5123456);
    }

    #[test]
    fn shortcodes_are_five_to_seven_digits() {
        assert!(ShortCode::parse("12345").is_ok());
        assert!(ShortCode::parse("1234567").is_ok());
        for bad in ["1234", "12345678", "017437", "17437a", ""] {
            let err = ShortCode::parse(bad).unwrap_err();
            assert_eq!(err.field, "BusinessShortCode");
        }
        assert_eq!(TillNumber::parse("12").unwrap_err().field, "PartyB");
    }

    #[test]
    fn merchant_debug_hides_the_passkey() {
        let m = Merchant::paybill(ShortCode::parse("174379").unwrap(), Secret::new("bfb279f9aa9bdbcf"));
        let debug = format!("{m:?}");
        assert!(!debug.contains("bfb279f9aa9bdbcf"), "{debug}");
        assert!(debug.contains("174379"));
    }
}
