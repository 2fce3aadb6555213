//! Magic test numbers: phones whose prompts always end the same way, one per STK result code
//! (reference §5), plus "no callback ever" and "late callback". The crate README shows this
//! table; a test checks every row in both the callback and the query.

use crate::config::Faults;

/// What the customer does with a prompt. On the control API it is a string: `"0"` (or
/// `"approve"`), a result code such as `"1032"` or `"SFC_IC0003"`, or `"virtual_phone"`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Answer {
    /// Enter the right PIN: the wallet pays (or the payment fails with 1 or 4 if it cannot).
    Approve,
    /// End with this result code (`"1032"`, `"SFC_IC0003"`, …).
    Fail(String),
    /// Leave it to a person on the virtual phone (1037 when the prompt times out).
    VirtualPhone,
}

impl From<String> for Answer {
    fn from(s: String) -> Self {
        match s.trim() {
            "0" | "approve" => Self::Approve,
            "virtual_phone" => Self::VirtualPhone,
            code => Self::Fail(code.to_owned()),
        }
    }
}

impl From<Answer> for String {
    fn from(a: Answer) -> Self {
        match a {
            Answer::Approve => "0".into(),
            Answer::Fail(code) => code,
            Answer::VirtualPhone => "virtual_phone".into(),
        }
    }
}

/// A magic number's behaviour.
#[derive(Debug, Clone, Copy)]
pub struct MagicNumber {
    /// The 12-digit MSISDN.
    pub msisdn: u64,
    /// The result code the transaction ends with.
    pub result_code: &'static str,
    /// What happens, for the README.
    pub behaviour: &'static str,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Code,
    NoCallback,
    LateCallback,
}

const fn code(msisdn: u64, result_code: &'static str, behaviour: &'static str) -> MagicNumber {
    MagicNumber { msisdn, result_code, behaviour, kind: Kind::Code }
}

/// The table of magic numbers.
pub const MAGIC_NUMBERS: &[MagicNumber] = &[
    code(254700000000, "0", "approves at once (paid from the wallet)"),
    code(254700000001, "1", "insufficient balance"),
    code(254700000017, "17", "rule limited"),
    code(254700001001, "1001", "subscriber locked by another session"),
    code(254700001019, "1019", "transaction expired"),
    code(254700001025, "1025", "the push could not be sent"),
    code(254700001032, "1032", "the customer cancels"),
    code(254700001037, "1037", "the phone cannot be reached"),
    code(254700002001, "2001", "wrong PIN"),
    code(254700080003, "SFC_IC0003", "the operator does not exist"),
    MagicNumber {
        msisdn: 254700090001,
        result_code: "0",
        behaviour: "approves, but no callback is ever sent (only a query tells)",
        kind: Kind::NoCallback,
    },
    MagicNumber {
        msisdn: 254700090002,
        result_code: "0",
        behaviour: "approves at once; the callback comes after `late_callback_delay`",
        kind: Kind::LateCallback,
    },
];

/// The magic number entry for a phone, if it is one.
pub fn magic(msisdn: u64) -> Option<&'static MagicNumber> {
    MAGIC_NUMBERS.iter().find(|m| m.msisdn == msisdn)
}

impl MagicNumber {
    /// The answer and how to change the push's faults.
    pub(crate) fn plan(&self, faults: &mut Faults, late_delay: std::time::Duration) -> Answer {
        match self.kind {
            Kind::Code if self.result_code == "0" => Answer::Approve,
            Kind::Code => Answer::Fail(self.result_code.to_owned()),
            Kind::NoCallback => {
                faults.drop = true;
                Answer::Approve
            }
            Kind::LateCallback => {
                faults.delay = late_delay;
                Answer::Approve
            }
        }
    }
}

/// Daraja's usual `ResultDesc` for a code.
pub fn result_desc(code: &str) -> &'static str {
    match code {
        "0" => "The service request is processed successfully.",
        "1" => "The balance is insufficient for the transaction.",
        "2" => "Declined due to limit rule.",
        "3" => "Declined due to limit rule: greater than the maximum transaction amount.",
        "4" => "Declined due to limit rule: would exceed daily transfer limit.",
        "8" => "Declined due to limit rule: would exceed the maximum balance.",
        "17" => "Rule limited.",
        "26" => "System busy.",
        "1001" => "Unable to lock subscriber, a transaction is already in process for the current subscriber",
        "1019" => "Transaction has expired.",
        "1025" | "9999" => "An error occurred while sending a push request.",
        "1031" | "1032" => "Request cancelled by user",
        "1037" => "DS timeout user cannot be reached",
        "2001" => "The initiator information is invalid.",
        "2028" => "The request is not permitted according to product assignment.",
        "8006" => "The security credential is locked.",
        "SFC_IC0003" => "The operator does not exist.",
        _ => "The transaction failed.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_numbers_are_unique_valid_msisdns() {
        let mut seen = std::collections::HashSet::new();
        for m in MAGIC_NUMBERS {
            assert!(seen.insert(m.msisdn));
            assert!((254_700_000_000..254_800_000_000).contains(&m.msisdn));
            assert_ne!(result_desc(m.result_code), "The transaction failed.");
        }
    }
}
