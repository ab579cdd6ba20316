/* Passkeys (WebAuthn) for the hosted pages: the only script they load, and only on the
   pages that offer a passkey. A form marked data-passkey="register|login|second" gets its
   ceremony's options from data-options-url (a POST with the form's CSRF token), runs
   navigator.credentials.create/get, writes the answer as JSON into the form's hidden
   `credential` field and submits the form. On /login, browsers with conditional UI also
   offer passkeys in the username field's autofill. Without this script (or WebAuthn)
   the passkey buttons stay hidden and the password forms work as always. */
(function () {
  "use strict";

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) base64 += "=";
    var raw = atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) return null;
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: toBytes(item.id) });
    });
  }

  function creationOptions(json) {
    var options = Object.assign({}, json, { challenge: toBytes(json.challenge) });
    options.user = Object.assign({}, json.user, { id: toBytes(json.user.id) });
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  function requestOptions(json) {
    var options = Object.assign({}, json, { challenge: toBytes(json.challenge) });
    options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  function answer(credential) {
    var r = credential.response;
    var response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      response.userHandle = toText(r.userHandle);
    }
    return JSON.stringify({
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response: response,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
    });
  }

  function fetchOptions(form) {
    var body = new FormData();
    body.append("csrf_token", form.elements.csrf_token.value);
    return fetch(form.dataset.optionsUrl, {
      method: "POST",
      body: body,
      credentials: "same-origin",
    }).then(function (response) {
      if (!response.ok) throw new Error("options: " + response.status);
      return response.json();
    });
  }

  function showError(form, show) {
    var error = form.querySelector("[data-passkey-error]");
    if (error) error.hidden = !show;
  }

  function submitWith(form, credential) {
    form.elements.credential.value = answer(credential);
    form.submit();
  }

  function setUp(form) {
    var mode = form.dataset.passkey;
    var button = form.querySelector("[data-passkey-start]");
    var pending = null; // the conditional (autofill) request on /login, if any
    var aborter = null;

    function run() {
      showError(form, false);
      button.disabled = true;
      var stopped = Promise.resolve();
      if (aborter) {
        aborter.abort();
        stopped = pending.catch(function () {});
      }
      stopped
        .then(function () {
          return fetchOptions(form);
        })
        .then(function (json) {
          if (mode === "register") {
            return navigator.credentials.create({ publicKey: creationOptions(json) });
          }
          return navigator.credentials.get({ publicKey: requestOptions(json) });
        })
        .then(function (credential) {
          submitWith(form, credential);
        })
        .catch(function () {
          button.disabled = false;
          showError(form, true);
        });
    }

    function autofill() {
      // Passkeys offered in the username field's suggestions, where the browser can.
      if (!PublicKeyCredential.isConditionalMediationAvailable) return;
      PublicKeyCredential.isConditionalMediationAvailable().then(function (yes) {
        if (!yes) return;
        aborter = new AbortController();
        pending = fetchOptions(form).then(function (json) {
          return navigator.credentials.get({
            publicKey: requestOptions(json),
            mediation: "conditional",
            signal: aborter.signal,
          });
        });
        pending.then(
          function (credential) {
            submitWith(form, credential);
          },
          function () {}
        );
      });
    }

    form.hidden = false;
    button.hidden = false;
    button.addEventListener("click", run);
    if (mode === "login" && form.dataset.autofill !== "off") autofill();
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.PublicKeyCredential || !navigator.credentials) return;
    document.querySelectorAll("form[data-passkey]").forEach(setUp);
  });
})();
