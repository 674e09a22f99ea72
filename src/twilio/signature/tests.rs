//! Conformance vectors of docs/PROTOCOLS.md §2.6, negative cases and a property test.

use proptest::prelude::*;

use super::*;

const TOKEN: &str = "12345";
const BASE: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const BODY: &[u8] = br#"{"property": "value", "boolean": true}"#;
const H1: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
const H2: &str = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

fn p() -> Vec<(String, String)> {
    pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ])
}

/// Signs `signed_url` with P, checks the expected value, and checks the validator given
/// `validator_url` accepts it.
fn check_form(signed_url: &str, validator_url: &str, params: &[(String, String)], expected: &str) {
    assert_eq!(
        compute_signature(TOKEN, signed_url, params),
        expected,
        "signature over {signed_url}"
    );
    assert_eq!(
        verify_form(TOKEN, validator_url, params, Some(expected)),
        Ok(()),
        "validator given {validator_url}"
    );
}

#[test]
fn v1_canonical() {
    check_form(BASE, BASE, &p(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
}

#[test]
fn v1_string_to_sign_order() {
    // CallSid sorts before Caller (byte 'S' < 'e'); parameter order in the input is irrelevant.
    let mut reversed = p();
    reversed.reverse();
    assert_eq!(
        compute_signature(TOKEN, BASE, &reversed),
        "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    );
}

#[test]
fn v2_https_default_port_added() {
    check_form(
        "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        BASE,
        &p(),
        "kvajT1Ptam85bY51eRf/AJRuM3w=",
    );
}

#[test]
fn v3_http_default_port_added() {
    check_form(
        "http://mycompany.com:80/myapp.php?foo=1&bar=2",
        "http://mycompany.com/myapp.php?foo=1&bar=2",
        &p(),
        "0ZXoZLH/DfblKGATFgpif+LLRf4=",
    );
}

#[test]
fn v4_non_default_port_kept() {
    let url = "http://mycompany.com:1234/myapp.php?foo=1&bar=2";
    check_form(url, url, &p(), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=");
}

#[test]
fn v5_port_stripped() {
    let validator = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
    check_form(BASE, validator, &p(), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
}

#[test]
fn v6_repeated_keys_sorted_and_deduplicated() {
    let expected = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";
    let py = pairs(&[
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
    ]);
    check_form(BASE, BASE, &py, expected);
    let node = pairs(&[
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]);
    check_form(BASE, BASE, &node, expected);
    // The signed tail of the spec.
    let tail = format!("{BASE}Digits1234Digits5678SidCA123SidAccountAC123");
    assert_eq!(compute_signature(TOKEN, &tail, &[]), expected);
}

#[test]
fn v7_array_values_either_order() {
    let expected = "83O6e2vORAoJHUNzJjDWN1jz+BA=";
    let a = pairs(&[
        ("MessagingBinding.Address", "+1325xxxxxxx"),
        ("MessagingBinding.Address", "+1415xxxxxxx"),
    ]);
    let b = pairs(&[
        ("MessagingBinding.Address", "+1415xxxxxxx"),
        ("MessagingBinding.Address", "+1325xxxxxxx"),
    ]);
    check_form(BASE, BASE, &a, expected);
    check_form(BASE, BASE, &b, expected);
}

#[test]
fn v8_userinfo_user_and_password() {
    let url = "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2";
    check_form(url, url, &p(), "CukzLTc1tT5dXEDIHm/tKBanW10=");
}

#[test]
fn v9_userinfo_user_only() {
    let url = "https://user@mycompany.com/myapp.php?foo=1&bar=2";
    check_form(url, url, &p(), "2YRLlVAflCqxaNicjMpJcSTgzSs=");
}

#[test]
fn v10_userinfo_with_port_added() {
    check_form(
        "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2",
        "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
        &p(),
        "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=",
    );
}

#[test]
fn v11_raw_query_kept_byte_for_byte() {
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2&Body=It%27s+amazing";
    check_form(url, url, &p(), "TfZzewPq8wqrGlMfyAud8+/IvJ0=");
    assert!(
        url_candidates(url)
            .iter()
            .all(|c| c.ends_with("?foo=1&bar=2&Body=It%27s+amazing"))
    );
}

#[test]
fn h1_h2_body_hashes() {
    assert_eq!(body_sha256_hex(BODY), H1);
    assert_eq!(body_sha256_hex(b"{}"), H2);
}

#[test]
fn v12_json_body() {
    let url = format!("{BASE}&bodySHA256={H1}");
    let sig = "a9nBmqA0ju/hNViExpshrM61xv4=";
    assert_eq!(compute_signature(TOKEN, &url, &[]), sig);
    assert_eq!(verify_json_body(TOKEN, &url, BODY, Some(sig)), Ok(()));
}

#[test]
fn v13_json_body_only_query_param() {
    let url = format!("https://mycompany.com/myapp.php?bodySHA256={H1}");
    let sig = "y77kIzt2vzLz71DgmJGsen2scGs=";
    assert_eq!(compute_signature(TOKEN, &url, &[]), sig);
    assert_eq!(verify_json_body(TOKEN, &url, BODY, Some(sig)), Ok(()));
}

#[test]
fn v14_json_body_only_with_port_added() {
    let signed = format!("https://mycompany.com:443/myapp.php?foo=1&bar=2&bodySHA256={H2}");
    let validator = format!("{BASE}&bodySHA256={H2}");
    let sig = "Ldidvp12m26NI7eqEvxnEpkd9Hc=";
    assert_eq!(compute_signature(TOKEN, &signed, &[]), sig);
    assert_ne!(
        compute_signature(TOKEN, &validator, &[]),
        sig,
        "must only match with :443 added"
    );
    assert_eq!(
        verify_json_body(TOKEN, &validator, b"{}", Some(sig)),
        Ok(())
    );
}

#[test]
fn additional_http_without_port() {
    let url = "http://mycompany.com/myapp.php?foo=1&bar=2";
    check_form(url, url, &p(), "OyGYPqTF6ztdbRNCvuQO/oPvqQ4=");
}

#[test]
fn additional_https_non_default_port() {
    let url = "https://mycompany.com:1234/myapp.php?foo=1&bar=2";
    check_form(url, url, &p(), "CYn1h0gLBdNxDGkKJg6hYohgeD8=");
}

#[test]
fn additional_get_nothing_appended() {
    let sig = "zYQTYrRWXE7LtzbG4PfP7/bkkGo=";
    assert_eq!(compute_signature(TOKEN, BASE, &[]), sig);
    assert_eq!(verify_get(TOKEN, BASE, Some(sig)), Ok(()));
}

#[test]
fn additional_websocket_upgrade() {
    let url = "wss://mycompany.com/media-stream";
    let sig = "N2Y//FHA042H22oVtTOPT1X3yoU=";
    assert_eq!(compute_signature(TOKEN, url, &[]), sig);
    assert_eq!(verify_get(TOKEN, url, Some(sig)), Ok(()));
    // Also accepted when Twilio included the default port.
    let with_port = compute_signature(TOKEN, "wss://mycompany.com:443/media-stream", &[]);
    assert_eq!(verify_get(TOKEN, url, Some(&with_port)), Ok(()));
}

// ---- negative cases ----

#[test]
fn wrong_signature_rejected() {
    assert_eq!(
        verify_form(TOKEN, BASE, &p(), Some("RSOYDt4T1cUTdK1PDd93/VVr8B8")),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_form(TOKEN, BASE, &p(), Some("AAAADt4T1cUTdK1PDd93/VVr8B8=")),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_form(TOKEN, BASE, &p(), Some("")),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_get(TOKEN, BASE, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn missing_header_rejected() {
    assert_eq!(
        verify_form(TOKEN, BASE, &p(), None),
        Err(SignatureError::Missing)
    );
    assert_eq!(verify_get(TOKEN, BASE, None), Err(SignatureError::Missing));
    let url = format!("{BASE}&bodySHA256={H1}");
    assert_eq!(
        verify_json_body(TOKEN, &url, BODY, None),
        Err(SignatureError::Missing)
    );
}

#[test]
fn body_without_body_hash_param_rejected() {
    // Correctly signed URL, but it has no bodySHA256 to bind the body.
    let sig = compute_signature(TOKEN, BASE, &[]);
    assert_eq!(
        verify_json_body(TOKEN, BASE, BODY, Some(&sig)),
        Err(SignatureError::MissingBodyHash)
    );
    // A parameter that merely ends with the name does not count.
    let url = format!("{BASE}&xbodySHA256={H1}");
    let sig = compute_signature(TOKEN, &url, &[]);
    assert_eq!(
        verify_json_body(TOKEN, &url, BODY, Some(&sig)),
        Err(SignatureError::MissingBodyHash)
    );
}

#[test]
fn extra_query_param_rejected() {
    let url = format!("{BASE}&somethingUnexpected=true");
    assert_eq!(
        verify_form(TOKEN, &url, &p(), Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
        Err(SignatureError::Mismatch)
    );
    let json_url = format!("{BASE}&bodySHA256={H1}&somethingUnexpected=true");
    assert_eq!(
        verify_json_body(TOKEN, &json_url, BODY, Some("a9nBmqA0ju/hNViExpshrM61xv4=")),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn wrong_token_rejected() {
    let sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    assert_eq!(
        verify_form("12346", BASE, &p(), Some(sig)),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_form("", BASE, &p(), Some(sig)),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn body_hash_mismatch_rejected() {
    let url = format!("{BASE}&bodySHA256={H1}");
    let sig = "a9nBmqA0ju/hNViExpshrM61xv4=";
    assert_eq!(
        verify_json_body(TOKEN, &url, b"{}", Some(sig)),
        Err(SignatureError::BodyHashMismatch)
    );
    assert_eq!(
        verify_json_body(
            TOKEN,
            &url,
            br#"{"property": "value", "boolean": false}"#,
            Some(sig)
        ),
        Err(SignatureError::BodyHashMismatch)
    );
}

#[test]
fn changed_param_rejected() {
    let sig = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    let mut params = p();
    params[2].1 = "1235".to_owned();
    assert_eq!(
        verify_form(TOKEN, BASE, &params, Some(sig)),
        Err(SignatureError::Mismatch)
    );
    // URL-encoded values are not what Twilio signs.
    let mut encoded = p();
    encoded[1].1 = "%2B14158675309".to_owned();
    assert_eq!(
        verify_form(TOKEN, BASE, &encoded, Some(sig)),
        Err(SignatureError::Mismatch)
    );
}

// ---- URL candidates ----

#[test]
fn candidates_for_urls() {
    assert_eq!(
        url_candidates(BASE),
        vec![
            BASE.to_owned(),
            "https://mycompany.com:443/myapp.php?foo=1&bar=2".to_owned()
        ]
    );
    assert_eq!(
        url_candidates("http://user:pass@h.example:8080/p?q=a:b@c/d"),
        vec![
            "http://user:pass@h.example:8080/p?q=a:b@c/d".to_owned(),
            "http://user:pass@h.example/p?q=a:b@c/d".to_owned()
        ]
    );
    assert_eq!(
        url_candidates("wss://h.example:443/media-stream"),
        vec![
            "wss://h.example:443/media-stream".to_owned(),
            "wss://h.example/media-stream".to_owned()
        ]
    );
    assert_eq!(
        url_candidates("ws://h.example?x=1"),
        vec![
            "ws://h.example?x=1".to_owned(),
            "ws://h.example:80?x=1".to_owned()
        ]
    );
    assert_eq!(
        url_candidates("https://[::1]/x"),
        vec![
            "https://[::1]/x".to_owned(),
            "https://[::1]:443/x".to_owned()
        ]
    );
    assert_eq!(
        url_candidates("https://[::1]:8443/x"),
        vec![
            "https://[::1]:8443/x".to_owned(),
            "https://[::1]/x".to_owned()
        ]
    );
    assert_eq!(
        url_candidates("https://h.example:/x"),
        vec![
            "https://h.example:/x".to_owned(),
            "https://h.example/x".to_owned(),
            "https://h.example:443/x".to_owned()
        ]
    );
    // Unknown scheme: no default port; unparseable input: itself only.
    assert_eq!(
        url_candidates("ftp://h.example/x"),
        vec!["ftp://h.example/x".to_owned()]
    );
    assert_eq!(url_candidates("not a url"), vec!["not a url".to_owned()]);
    assert_eq!(
        url_candidates("https://h.example:abc/x"),
        vec!["https://h.example:abc/x".to_owned()]
    );
}

// ---- URL reconstruction ----

fn parse(s: &str) -> url::Url {
    url::Url::parse(s).expect("valid test URL")
}

#[test]
fn build_url_joins_base_and_path() {
    assert_eq!(
        build_url(&parse("https://mycompany.com"), "/myapp.php?foo=1&bar=2"),
        BASE
    );
    assert_eq!(
        build_url(&parse("https://mycompany.com/"), "/myapp.php?foo=1&bar=2"),
        BASE
    );
    assert_eq!(
        build_url(
            &parse("https://h.example/prefix"),
            "/twilio/voice?a=It%27s+x"
        ),
        "https://h.example/prefix/twilio/voice?a=It%27s+x"
    );
    assert_eq!(
        build_url(&parse("https://h.example/prefix/"), "/twilio/voice/"),
        "https://h.example/prefix/twilio/voice/"
    );
    assert_eq!(
        build_url(&parse("https://h.example/prefix"), "twilio/voice"),
        "https://h.example/prefix/twilio/voice"
    );
    assert_eq!(
        build_url(&parse("http://127.0.0.1:5050/"), "/twilio/voice"),
        "http://127.0.0.1:5050/twilio/voice"
    );
    // The url crate drops a default port and lower-cases the host; candidates re-add the port.
    assert_eq!(
        build_url(&parse("https://MyCompany.com:443"), "/x"),
        "https://mycompany.com/x"
    );
    // A base query/fragment is ignored.
    assert_eq!(
        build_url(&parse("https://h.example/p?z=1#f"), "/x?y=2"),
        "https://h.example/p/x?y=2"
    );
}

#[test]
fn build_url_round_trips_v1() {
    let url = build_url(&parse("https://mycompany.com/"), "/myapp.php?foo=1&bar=2");
    assert_eq!(
        verify_form(TOKEN, &url, &p(), Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
        Ok(())
    );
}

#[test]
fn build_ws_url_switches_scheme() {
    assert_eq!(
        build_ws_url(&parse("https://mycompany.com"), "/media-stream"),
        "wss://mycompany.com/media-stream"
    );
    assert_eq!(
        build_ws_url(&parse("https://h.example/prefix/"), "/media-stream"),
        "wss://h.example/prefix/media-stream"
    );
    assert_eq!(
        build_ws_url(&parse("http://127.0.0.1:5050"), "/media-stream"),
        "ws://127.0.0.1:5050/media-stream"
    );
    assert_eq!(
        build_ws_url(&parse("https://user:pw@h.example:8443/p"), "/s"),
        "wss://user:pw@h.example:8443/p/s"
    );
    let url = build_ws_url(&parse("https://mycompany.com/"), "/media-stream");
    assert_eq!(
        verify_get(TOKEN, &url, Some("N2Y//FHA042H22oVtTOPT1X3yoU=")),
        Ok(())
    );
}

// ---- property test ----

/// Replaces the `index`-th (mod len) character of `s` with a different one from `alphabet`.
fn mutate(s: &str, index: usize, pick: usize, alphabet: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let i = index % chars.len();
    let choices: Vec<char> = alphabet.chars().filter(|c| *c != chars[i]).collect();
    chars[i] = choices[pick % choices.len()];
    chars.into_iter().collect()
}

const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const URL_CHARS: &str = "abcdefghijklmnopqrstuvwxyz0123456789/._-=&%+";
const VALUE_CHARS: &str = "0123456789 +@.:_é€";

proptest! {
    #[test]
    fn signature_verifies_and_any_change_breaks_it(
        token in "[ -~]{1,40}",
        scheme in prop_oneof![Just("https"), Just("http")],
        host in "[a-z]{1,12}\\.com",
        path in "[a-z0-9/._-]{0,30}",
        query in proptest::option::of("[a-z0-9=&%+._-]{0,30}"),
        // Names are `[A-Z][a-z]*`, values contain no ASCII letters: the string to sign then
        // parses back uniquely into the parameter set, so any change of it is detectable.
        params in proptest::collection::btree_map("[A-Z][a-z]{0,8}", "[0-9 +@.:_é€]{0,12}", 0..8),
        index in any::<usize>(),
        pick in any::<usize>(),
    ) {
        let url = match &query {
            Some(q) => format!("{scheme}://{host}/{path}?{q}"),
            None => format!("{scheme}://{host}/{path}"),
        };
        let params: Vec<(String, String)> = params.into_iter().collect();
        let sig = compute_signature(&token, &url, &params);
        prop_assert_eq!(verify_form(&token, &url, &params, Some(&sig)), Ok(()));

        // A URL character after the authority.
        let path_start = format!("{scheme}://{host}/").len();
        let tail = &url[path_start..];
        if !tail.is_empty() {
            let changed = format!("{}{}", &url[..path_start], mutate(tail, index, pick, URL_CHARS));
            prop_assert_eq!(verify_form(&token, &changed, &params, Some(&sig)), Err(SignatureError::Mismatch));
        }

        // A parameter name (upper stays upper, lower stays lower).
        if !params.is_empty() {
            let mut changed = params.clone();
            let which = index % changed.len();
            let name = &changed[which].0;
            let pos = pick % name.len();
            let alphabet = if pos == 0 { UPPER } else { LOWER };
            changed[which].0 = mutate(name, pos, index / 7, alphabet);
            prop_assert_eq!(verify_form(&token, &url, &changed, Some(&sig)), Err(SignatureError::Mismatch));
        }

        // A parameter value.
        if let Some(which) = params.iter().position(|(_, v)| !v.is_empty()) {
            let mut changed = params.clone();
            changed[which].1 = mutate(&changed[which].1, index, pick, VALUE_CHARS);
            prop_assert_eq!(verify_form(&token, &url, &changed, Some(&sig)), Err(SignatureError::Mismatch));
        }

        // The token.
        let changed = mutate(&token, index, pick, " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~");
        prop_assert_eq!(verify_form(&changed, &url, &params, Some(&sig)), Err(SignatureError::Mismatch));
    }
}
