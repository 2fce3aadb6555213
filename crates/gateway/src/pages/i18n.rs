//! The pages' words in English and Swahili. The language comes from `?lang=`, then the
//! `lipa_lang` cookie, then `Accept-Language`.

use axum::http::HeaderMap;

/// A page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Kiswahili.
    Sw,
}

impl Lang {
    /// The `lang` attribute and query value.
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Sw => "sw",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.trim().get(..2).map(str::to_ascii_lowercase).as_deref() {
            Some("en") => Some(Self::En),
            Some("sw") => Some(Self::Sw),
            _ => None,
        }
    }

    /// The other language, for the switch link.
    pub fn other(self) -> Self {
        match self {
            Self::En => Self::Sw,
            Self::Sw => Self::En,
        }
    }

    /// Picks the language for a request; the bool says whether `?lang=` chose it (then it is
    /// remembered in a cookie).
    pub fn negotiate(query: Option<&str>, headers: &HeaderMap) -> (Self, bool) {
        if let Some(lang) = query.and_then(Self::parse) {
            return (lang, true);
        }
        let cookie = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("lipa_lang="))
            .and_then(Self::parse);
        if let Some(lang) = cookie {
            return (lang, false);
        }
        // The first language of Accept-Language that we speak (weights are in preference order
        // in practice).
        let accepted = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .into_iter()
            .flat_map(|v| v.split(','))
            .find_map(|part| Self::parse(part.split(';').next().unwrap_or_default()));
        (accepted.unwrap_or(Self::En), false)
    }

    /// The words.
    pub fn t(self) -> &'static Texts {
        match self {
            Self::En => &EN,
            Self::Sw => &SW,
        }
    }
}

/// Every phrase the pages use.
#[derive(Debug)]
pub struct Texts {
    pub switch_to: &'static str,
    /// "Pay {business}", the form's heading.
    pub pay_to: &'static str,
    pub business: &'static str,
    pub for_: &'static str,
    pub reference: &'static str,
    pub amount: &'static str,
    pub phone_label: &'static str,
    pub phone_hint: &'static str,
    pub phone_invalid: &'static str,
    pub send_prompt: &'static str,
    pub back_to_shop: &'static str,
    pub check_phone_title: &'static str,
    /// "Check your phone {phone} and enter your M-PESA PIN to pay {amount} to {business}."
    pub check_phone: &'static str,
    pub waiting: &'static str,
    pub expires_in: &'static str,
    pub seconds: &'static str,
    pub no_prompt_title: &'static str,
    pub no_prompt_steps: [&'static str; 3],
    pub refresh_note: &'static str,
    pub paid_title: &'static str,
    pub receipt: &'static str,
    pub date: &'static str,
    pub return_to_shop: &'static str,
    pub failed_title: &'static str,
    pub expired_reason: &'static str,
    /// A 1037 that came when the prompt's time ran out: it was most likely shown, not answered.
    pub unanswered_reason: &'static str,
    /// Shown by the script when the live updates stopped (the server is unreachable).
    pub stale: &'static str,
    pub refused_reason: &'static str,
    pub send_again: &'static str,
    pub not_found_title: &'static str,
    pub not_found: &'static str,
    pub prompt_still_open: &'static str,
    pub too_many: &'static str,
    pub try_later: &'static str,
    pub paybill_title: &'static str,
    pub paybill_intro: &'static str,
    pub paybill_menu: &'static str,
    pub business_number: &'static str,
    pub account_number: &'static str,
    pub paybill_done: &'static str,
    /// "{received} received so far; {left} still to pay."
    pub paybill_received: &'static str,
}

static EN: Texts = Texts {
    switch_to: "Kiswahili",
    pay_to: "Pay {business}",
    business: "To",
    for_: "For",
    reference: "Reference",
    amount: "Amount",
    phone_label: "M-PESA phone number",
    phone_hint: "For example 0712\u{a0}345\u{a0}678 or +254\u{a0}712\u{a0}345\u{a0}678",
    phone_invalid: "Enter a Safaricom number like 0712 345 678: 10 digits starting with 07 or 01.",
    send_prompt: "Send the M-PESA prompt",
    back_to_shop: "Back to shop",
    check_phone_title: "Check your phone",
    check_phone: "Check your phone {phone} and enter your M-PESA PIN to pay {amount} to {business}.",
    waiting: "Waiting for your answer…",
    expires_in: "The prompt expires in",
    seconds: "s",
    no_prompt_title: "No prompt on your phone?",
    no_prompt_steps: [
        "Make sure the phone is on, unlocked and has network.",
        "Close any other M-PESA menu that is open on the phone.",
        "Wait until the prompt expires, then send it again.",
    ],
    refresh_note: "This page refreshes itself every few seconds.",
    paid_title: "Payment received",
    receipt: "M-PESA receipt",
    date: "Date and time",
    return_to_shop: "Return to shop",
    failed_title: "The payment did not go through",
    expired_reason: "No answer came from your phone in time.",
    unanswered_reason: "The prompt on your phone was not answered in time. Send it again and enter your M-PESA PIN when it appears.",
    stale: "Lost contact with the payment service: this page may be out of date. Reload it to see the latest.",
    refused_reason: "M-PESA could not send the prompt. Please try again.",
    send_again: "Send the prompt again",
    not_found_title: "Checkout not found",
    not_found: "This checkout link is unknown or has expired. Go back to the shop and start again.",
    prompt_still_open: "The previous prompt is still open on the phone. Answer it, or wait until it expires.",
    too_many: "Too many prompts were sent to this phone. Please wait a while and try again.",
    try_later: "Something went wrong on our side. Please try again in a moment.",
    paybill_title: "Pay from the M-PESA menu instead",
    paybill_intro: "No prompt needed: pay by hand from your phone's M-PESA menu.",
    paybill_menu: "Open M-PESA, choose Lipa na M-PESA, then Pay Bill, and enter:",
    business_number: "Business number",
    account_number: "Account number",
    paybill_done: "Enter your PIN and send. This page shows the payment as soon as it arrives.",
    paybill_received: "{received} received so far; {left} still to pay.",
};

static SW: Texts = Texts {
    switch_to: "English",
    pay_to: "Malipo kwa {business}",
    business: "Kwa",
    for_: "Kwa ajili ya",
    reference: "Kumbukumbu",
    amount: "Kiasi",
    phone_label: "Nambari ya simu ya M-PESA",
    phone_hint: "Kwa mfano 0712\u{a0}345\u{a0}678 au +254\u{a0}712\u{a0}345\u{a0}678",
    phone_invalid: "Weka nambari ya Safaricom kama 0712 345 678: tarakimu 10 zinazoanza na 07 au 01.",
    send_prompt: "Tuma ombi la M-PESA",
    back_to_shop: "Rudi dukani",
    check_phone_title: "Angalia simu yako",
    check_phone: "Angalia simu yako {phone} na uweke PIN yako ya M-PESA kulipa {amount} kwa {business}.",
    waiting: "Tunasubiri jibu lako…",
    expires_in: "Ombi litaisha baada ya",
    seconds: "s",
    no_prompt_title: "Hukupata ombi kwenye simu?",
    no_prompt_steps: [
        "Hakikisha simu imewashwa, haijafungwa na ina mtandao.",
        "Funga menyu nyingine yoyote ya M-PESA iliyo wazi kwenye simu.",
        "Subiri ombi liishe, kisha ulitume tena.",
    ],
    refresh_note: "Ukurasa huu hujisasisha kila baada ya sekunde chache.",
    paid_title: "Malipo yamepokelewa",
    receipt: "Risiti ya M-PESA",
    date: "Tarehe na saa",
    return_to_shop: "Rudi dukani",
    failed_title: "Malipo hayakufanikiwa",
    expired_reason: "Hakuna jibu lililotoka kwenye simu yako kwa wakati.",
    unanswered_reason: "Ombi kwenye simu yako halikujibiwa kwa wakati. Litume tena na uweke PIN yako ya M-PESA linapotokea.",
    stale: "Mawasiliano na huduma ya malipo yamekatika: huenda ukurasa huu haujasasishwa. Upakie upya uone hali ya sasa.",
    refused_reason: "M-PESA haikuweza kutuma ombi. Tafadhali jaribu tena.",
    send_again: "Tuma ombi tena",
    not_found_title: "Malipo hayapatikani",
    not_found: "Kiungo hiki cha malipo hakijulikani au kimeisha muda. Rudi dukani uanze upya.",
    prompt_still_open: "Ombi la awali bado liko wazi kwenye simu. Lijibu, au subiri liishe.",
    too_many: "Maombi mengi yametumwa kwa simu hii. Tafadhali subiri kidogo ujaribu tena.",
    try_later: "Hitilafu imetokea upande wetu. Tafadhali jaribu tena baadaye kidogo.",
    paybill_title: "Lipa kupitia menyu ya M-PESA badala yake",
    paybill_intro: "Hakuna haja ya ombi: lipa mwenyewe kupitia menyu ya M-PESA kwenye simu yako.",
    paybill_menu: "Fungua M-PESA, chagua Lipa na M-PESA, kisha Pay Bill, na uweke:",
    business_number: "Nambari ya biashara",
    account_number: "Nambari ya akaunti",
    paybill_done: "Weka PIN yako na utume. Ukurasa huu utaonyesha malipo mara yatakapofika.",
    paybill_received: "{received} imepokelewa hadi sasa; {left} bado kulipwa.",
};
