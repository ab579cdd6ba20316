// The hosted pages' proof-of-work check: fetch a signed challenge, find the number whose
// SHA-256 with the salt is the challenge (ALTCHA v1), put the solution in the form's
// hidden captcha_token field. The submit button waits until it is done.
(function () {
  "use strict";

  function hex(buffer) {
    return Array.from(new Uint8Array(buffer), function (b) {
      return b.toString(16).padStart(2, "0");
    }).join("");
  }

  async function solve(challenge) {
    var encoder = new TextEncoder();
    for (var n = 0; n <= challenge.maxNumber; n++) {
      var digest = await crypto.subtle.digest("SHA-256", encoder.encode(challenge.salt + n));
      if (hex(digest) === challenge.challenge) {
        return n;
      }
    }
    return null;
  }

  async function run(box) {
    var input = box.querySelector("input[name=captcha_token]");
    var status = box.querySelector(".captcha-status");
    var button = box.closest("form").querySelector("button[type=submit]");
    button.disabled = true;
    status.textContent = box.dataset.working;
    try {
      var answer = await fetch(box.dataset.challengeUrl, { cache: "no-store" });
      var challenge = await answer.json();
      var number = await solve(challenge);
      if (number === null) {
        throw new Error("no solution");
      }
      input.value = btoa(JSON.stringify({
        algorithm: challenge.algorithm,
        challenge: challenge.challenge,
        number: number,
        salt: challenge.salt,
        signature: challenge.signature,
      }));
      status.textContent = box.dataset.done;
      box.dataset.solved = "true";
    } catch (error) {
      status.textContent = box.dataset.failed;
    }
    button.disabled = false;
  }

  document.querySelectorAll("[data-captcha]").forEach(run);
})();
