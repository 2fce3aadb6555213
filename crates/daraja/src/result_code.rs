//! STK result codes (reference §5): the final answer for one CheckoutRequestID, as carried by
//! the callback and by STK Query.
//!
//! Each known code has a catalogue entry: what it means, who caused it, whether a new push may
//! help, and a message fit to show the customer in English and Swahili. Unknown codes are kept
//! verbatim in [`ResultCode::Other`] and treated as a generic failure.

use std::fmt;

/// Who caused a result, which decides who should act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing went wrong: the payment succeeded.
    None,
    /// The customer (cancelled, wrong PIN, no balance, phone unreachable, …).
    Customer,
    /// The request itself (amount outside the limits, prompt text too long).
    Request,
    /// The merchant's configuration (till/paybill mix-up, account limits): alert the operator.
    MerchantConfig,
    /// Safaricom's systems: retry later with a new push.
    System,
}

/// What is known about one result code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultInfo {
    /// The code as it appears on the wire.
    pub code: &'static str,
    /// Daraja's typical `ResultDesc`.
    pub description: &'static str,
    /// What it means, for operators.
    pub meaning: &'static str,
    /// Who caused it.
    pub cause: Cause,
    /// Whether sending a new push (possibly after a wait) may succeed.
    pub new_push_may_help: bool,
    /// A short message for the customer, in English.
    pub customer_en: &'static str,
    /// The same message in Swahili.
    pub customer_sw: &'static str,
}

macro_rules! result_codes {
    ($( $variant:ident = $code:literal, $desc:literal, $meaning:literal, $cause:ident, $retry:literal, $en:literal, $sw:literal; )*) => {
        /// A result code of an STK transaction.
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub enum ResultCode {
            $(
                #[doc = concat!("`", $code, "`: ", $meaning)]
                $variant,
            )*
            /// A code not in the catalogue, kept verbatim.
            Other(Box<str>),
        }

        const CATALOGUE: &[ResultInfo] = &[
            $( ResultInfo {
                code: $code,
                description: $desc,
                meaning: $meaning,
                cause: Cause::$cause,
                new_push_may_help: $retry,
                customer_en: $en,
                customer_sw: $sw,
            }, )*
        ];

        impl ResultCode {
            /// Reads a code as it appears on the wire (`"0"`, `"1032"`, `"SFC_IC0003"`).
            pub fn from_wire(code: &str) -> Self {
                match code.trim() {
                    $( $code => Self::$variant, )*
                    other => Self::Other(other.into()),
                }
            }

            /// The code as it appears on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $code, )*
                    Self::Other(code) => code,
                }
            }

            /// The catalogue entry, or `None` for an unknown code.
            pub fn info(&self) -> Option<&'static ResultInfo> {
                let code = self.as_str();
                CATALOGUE.iter().find(|i| i.code == code)
            }
        }
    };
}

result_codes! {
    Success = "0", "The service request is processed successfully.",
        "paid; the callback carries the receipt", None, false,
        "Payment received. Thank you!", "Malipo yamepokelewa. Asante!";
    InsufficientBalance = "1", "The balance is insufficient for the transaction.",
        "not enough M-Pesa balance (and no Fuliza)", Customer, true,
        "Your M-PESA balance is not enough. Top up and try again.",
        "Salio lako la M-PESA halitoshi. Ongeza salio ujaribu tena.";
    BelowMinimum = "2", "Declined due to limit rule.",
        "amount below the minimum of KES 1", Request, false,
        "This amount is below the M-PESA minimum.", "Kiasi hiki ni chini ya kiwango cha chini cha M-PESA.";
    AboveMaximum = "3", "Declined due to limit rule: greater than the maximum transaction amount.",
        "amount above the per-transaction maximum", Request, false,
        "This amount is above the M-PESA limit per transaction.",
        "Kiasi hiki kinazidi kikomo cha M-PESA kwa muamala mmoja.";
    DailyLimit = "4", "Declined due to limit rule: would exceed daily transfer limit.",
        "the customer's daily limit would be exceeded", Customer, false,
        "This payment would pass your daily M-PESA limit.",
        "Malipo haya yatazidi kikomo chako cha siku cha M-PESA.";
    MerchantBalanceLimit = "8", "Declined due to limit rule: would exceed the maximum balance.",
        "the receiving account's balance limit would be exceeded", MerchantConfig, false,
        "The business cannot receive this payment right now. No money was taken.",
        "Biashara haiwezi kupokea malipo haya sasa. Hakuna pesa iliyokatwa.";
    RuleLimited = "17", "Rule limited.",
        "same amount to the same customer within 2 minutes (or an internal failure)", System, true,
        "Please wait two minutes, then try again.", "Tafadhali subiri dakika mbili, kisha ujaribu tena.";
    SystemBusy = "26", "System busy.",
        "M-Pesa is overloaded (traffic blocking)", System, true,
        "M-PESA is busy. Please try again in a few minutes.",
        "M-PESA ina shughuli nyingi. Tafadhali jaribu tena baada ya dakika chache.";
    SubscriberLocked = "1001", "Unable to lock subscriber, a transaction is already in process for the current subscriber",
        "another M-Pesa session is open on the phone", Customer, true,
        "Another M-PESA request is open on your phone. Finish or close it, wait a minute, then try again.",
        "Kuna ombi lingine la M-PESA kwenye simu yako. Limalize au lifunge, subiri dakika moja, kisha ujaribu tena.";
    Expired = "1019", "Transaction has expired.",
        "not completed in the allowed time", Customer, true,
        "The payment request expired. Please try again.", "Ombi la malipo limeisha muda. Tafadhali jaribu tena.";
    PushFailed = "1025", "An error occurred while sending a push request.",
        "the prompt could not be sent (prompt text too long, or a system error)", System, true,
        "We could not send the M-PESA prompt. Please try again.",
        "Hatukuweza kutuma ombi la M-PESA. Tafadhali jaribu tena.";
    PushError = "9999", "An error occurred while sending a push request.",
        "the prompt could not be sent", System, true,
        "We could not send the M-PESA prompt. Please try again.",
        "Hatukuweza kutuma ombi la M-PESA. Tafadhali jaribu tena.";
    Cancelled = "1032", "Request cancelled by user",
        "the customer cancelled or dismissed the prompt", Customer, true,
        "You cancelled the payment. No money was taken.", "Umesitisha malipo. Hakuna pesa iliyokatwa.";
    CancelledAlt = "1031", "Request cancelled by user",
        "the customer cancelled the prompt", Customer, true,
        "You cancelled the payment. No money was taken.", "Umesitisha malipo. Hakuna pesa iliyokatwa.";
    Unreachable = "1037", "DS timeout user cannot be reached",
        "the phone was unreachable, offline or busy, or did not answer in time", Customer, true,
        "We could not reach your phone. Check it is on and has signal, then try again.",
        "Hatukuweza kufikia simu yako. Hakikisha iko hewani na ina mtandao, kisha ujaribu tena.";
    WrongPin = "2001", "The initiator information is invalid.",
        "the customer entered a wrong PIN", Customer, true,
        "The M-PESA PIN was wrong. Please try again.", "PIN ya M-PESA si sahihi. Tafadhali jaribu tena.";
    ProductMismatch = "2028", "The request is not permitted according to product assignment.",
        "TransactionType/PartyB mismatch (till vs paybill)", MerchantConfig, false,
        "The business's M-PESA setup has a problem. No money was taken.",
        "Mipangilio ya M-PESA ya biashara ina tatizo. Hakuna pesa iliyokatwa.";
    CredentialLocked = "8006", "The security credential is locked.",
        "the customer's PIN is locked", Customer, false,
        "Your M-PESA PIN is locked. Please call Safaricom customer care.",
        "PIN yako ya M-PESA imefungwa. Tafadhali piga simu huduma kwa wateja wa Safaricom.";
    OperatorDoesNotExist = "SFC_IC0003", "The operator does not exist.",
        "TransactionType/PartyB mismatch (commonly a till sent as a paybill)", MerchantConfig, false,
        "The business's M-PESA setup has a problem. No money was taken.",
        "Mipangilio ya M-PESA ya biashara ina tatizo. Hakuna pesa iliyokatwa.";
}

impl ResultCode {
    /// Whether the payment succeeded.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Success)
    }

    /// Who caused the result. Unknown codes count as [`Cause::System`].
    pub fn cause(&self) -> Cause {
        self.info().map_or(Cause::System, |i| i.cause)
    }

    /// Whether a new push may succeed. Unknown codes: yes.
    pub fn new_push_may_help(&self) -> bool {
        self.info().is_none_or(|i| i.new_push_may_help)
    }

    /// A message for the customer in English; a generic one for unknown codes.
    pub fn customer_message_en(&self) -> &'static str {
        self.info().map_or("The payment did not go through. Please try again.", |i| i.customer_en)
    }

    /// A message for the customer in Swahili; a generic one for unknown codes.
    pub fn customer_message_sw(&self) -> &'static str {
        self.info().map_or("Malipo hayakufanikiwa. Tafadhali jaribu tena.", |i| i.customer_sw)
    }

    /// Every catalogued code.
    pub fn catalogue() -> &'static [ResultInfo] {
        CATALOGUE
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResultCode({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogued_code_round_trips() {
        for info in ResultCode::catalogue() {
            let code = ResultCode::from_wire(info.code);
            assert!(!matches!(code, ResultCode::Other(_)), "{}", info.code);
            assert_eq!(code.as_str(), info.code);
            assert_eq!(code.info(), Some(info));
        }
        assert_eq!(ResultCode::catalogue().len(), 19);
    }

    #[test]
    fn classification() {
        assert!(ResultCode::from_wire("0").is_success());
        assert_eq!(ResultCode::from_wire("1032").cause(), Cause::Customer);
        assert_eq!(ResultCode::from_wire("SFC_IC0003").cause(), Cause::MerchantConfig);
        assert!(!ResultCode::from_wire("SFC_IC0003").new_push_may_help());
        assert_eq!(ResultCode::from_wire("1037").customer_message_sw(), ResultCode::Unreachable.customer_message_sw());
        let unknown = ResultCode::from_wire("4242");
        assert_eq!(unknown, ResultCode::Other("4242".into()));
        assert_eq!(unknown.cause(), Cause::System);
        assert!(unknown.info().is_none());
        assert!(unknown.customer_message_en().contains("did not go through"));
    }
}
