//! Signing in and out: the form with its own CSRF cookie, the throttled password check.

use super::*;

#[derive(Debug, Deserialize)]
pub(in crate::admin) struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    /// The sign-in form's own CSRF token (a copy of the `lipa_login` cookie).
    #[serde(default)]
    form_token: String,
}

/// The cookie that carries the sign-in form's token: the form is accepted only with the
/// cookie's value in its `form_token` field, which another site can neither read nor set, so
/// no other site can sign a visitor's browser in to an account of its choosing (login CSRF).
pub(in crate::admin) const LOGIN_COOKIE: &str = "lipa_login";

pub(in crate::admin) fn login_page(gateway: &Gateway, message: Option<&str>, status: StatusCode) -> Response {
    login_page_for(gateway, "", message, status)
}

/// The sign-in page with `name` kept in the user field (after a refused attempt).
fn login_page_for(gateway: &Gateway, name: &str, message: Option<&str>, status: StatusCode) -> Response {
    let name: String = name.chars().take(64).collect();
    let token = crate::ids::random_hex(16);
    let mut response = layout(
        None,
        "Sign in",
        "",
        html! {
            div class="narrow" {
                h1 { "Lipa admin" }
                @if let Some(m) = message { p class="error" role="alert" { (m) } }
                form method="post" action="/admin/login" {
                    input type="hidden" name="form_token" value=(token);
                    label for="name" { "User" }
                    input id="name" name="name" autocomplete="username" required autofocus[name.is_empty()] value=(name);
                    label for="password" { "Password" }
                    input id="password" name="password" type="password" autocomplete="current-password" required autofocus[!name.is_empty()];
                    button type="submit" { "Sign in" }
                }
            }
        },
    );
    *response.status_mut() = status;
    if let Ok(cookie) =
        header::HeaderValue::from_str(&auth::set_cookie(gateway, LOGIN_COOKIE, &token, "/admin/login", None))
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(in crate::admin) async fn login_form(State(gateway): State<Gateway>) -> Response {
    login_page(&gateway, None, StatusCode::OK)
}

/// Whether the sign-in form came with the token of the `lipa_login` cookie.
pub(in crate::admin) fn login_form_token_ok(headers: &HeaderMap, sent: &str) -> bool {
    auth::cookie_value(headers, LOGIN_COOKIE)
        .is_some_and(|cookie| cookie.len() == 32 && crate::ids::constant_time_eq(cookie, sent))
}

/// Signs a staff member in. Anyone can send this form, so it does bounded work: a body of at
/// most 4 KiB (see the router), a name checked against the naming rule before anything else
/// uses it, an attempt reserved for the address and the user before the password is checked
/// (see [`auth::Throttle`]), the check off the request threads, and an audit line only for
/// attempts that passed the throttle, with the name only if it is a valid one.
pub(in crate::admin) async fn login(
    State(gateway): State<Gateway>,
    State(throttle): State<std::sync::Arc<auth::Throttle>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return login_page(&gateway, Some("Enter a user and a password."), StatusCode::BAD_REQUEST);
    };
    if !login_form_token_ok(&headers, &form.form_token) {
        return login_page(&gateway, Some("This sign-in form has expired. Sign in again."), StatusCode::FORBIDDEN);
    }
    let now = gateway.now();
    let ip = crate::api::client_address(&gateway, &headers, peer);
    let address = auth::address_key(ip);
    let name = auth::valid_name(&form.name).then_some(form.name.as_str());
    match throttle.reserve(gateway.store(), name, &address, now).await {
        Ok(true) => {}
        Ok(false) => {
            return login_page(
                &gateway,
                Some("Too many failed attempts. Wait 15 minutes, then try again."),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(e) => return store_down(&e),
    }
    let user = match name {
        Some(name) => match gateway.store().admin_user(name).await {
            Ok(u) => u,
            Err(e) => {
                let _ = throttle.not_tried(gateway.store(), Some(name), &address).await;
                return store_down(&e);
            }
        },
        None => None,
    };
    // A valid name's hash is checked even when nobody has it, so timing does not tell which
    // names exist; a name against the rule cannot exist, and is refused without a check.
    let matches = match name {
        Some(_) => match throttle.check_password(user.as_ref().map(|u| u.password_hash.clone()), form.password).await {
            Ok(matches) => matches,
            Err(auth::Busy) => {
                let _ = throttle.not_tried(gateway.store(), name, &address).await;
                return login_page(
                    &gateway,
                    Some("Too many people are signing in at once. Try again in a minute."),
                    StatusCode::SERVICE_UNAVAILABLE,
                );
            }
        },
        None => false,
    };
    let Some(user) = user.filter(|_| matches) else {
        let _ = gateway
            .store()
            .audit(name.unwrap_or("(not a user name)"), "login_failed", "admin", &ip.to_string(), now)
            .await;
        return login_page_for(&gateway, &form.name, Some("Wrong user or password."), StatusCode::UNAUTHORIZED);
    };
    if let Err(e) = throttle.succeeded(gateway.store(), &user.name, &address).await {
        return store_down(&e);
    }
    let cookie = match auth::start_session(&gateway, &user).await {
        Ok(c) => c,
        Err(e) => return store_down(&e),
    };
    let _ = gateway.store().audit(&user.name, "login", "admin", &ip.to_string(), now).await;
    ([(header::SET_COOKIE, cookie)], Redirect::to("/admin")).into_response()
}

/// A state-changing request: a signed-in admin, the form's CSRF token checked, and its
/// optional `note` field.
pub(in crate::admin) struct Action {
    pub(in crate::admin) staff: Staff,
    pub(in crate::admin) note: String,
    /// Whether the form's `confirm` field says `yes` (the second step of an action that
    /// cannot be undone).
    pub(in crate::admin) confirmed: bool,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Action
where
    Gateway: axum::extract::FromRef<S>,
{
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        use axum::extract::FromRequestParts as _;
        let (mut parts, body) = request.into_parts();
        let staff = Staff::from_request_parts(&mut parts, state).await?;
        let request = axum::extract::Request::from_parts(parts, body);
        let form = Form::<CsrfForm>::from_request(request, state).await.map(|Form(f)| f).unwrap_or_default();
        staff.may_act(&form.csrf).map_err(IntoResponse::into_response)?;
        Ok(Self { staff, note: form.note, confirmed: form.confirm == "yes" })
    }
}

#[derive(Debug, Default, Deserialize)]
pub(in crate::admin) struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    confirm: String,
}

pub(in crate::admin) async fn logout(
    State(gateway): State<Gateway>,
    staff: Staff,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    // Any role may sign out; the token still has to match.
    if csrf != staff.session.csrf {
        return (StatusCode::FORBIDDEN, "This form did not come from this dashboard.").into_response();
    }
    let _ = gateway.store().delete_admin_session(&staff.token_hash).await;
    let _ = gateway.store().audit(staff.name(), "logout", "admin", "", gateway.now()).await;
    ([(header::SET_COOKIE, auth::cookie(&gateway, "", Some(0)))], Redirect::to("/admin/login")).into_response()
}
