#!/usr/bin/env python3
"""Every preset and Standard Webhooks v1a, signed by the sender's own code and sent through real nginx with the
recipe as shipped (deploy/nginx/webhook-senders.conf, a location per sender) to one handler with a spool:
a valid delivery is 200 and stored (the spool holds its exact bytes); a tampered body, a wrong key, a stale and a
future timestamp are 400; a rotated key (the previous secret, or a second public key) is 200.

Who signs (docs/schemes.md says the same):
  slack         slack_sdk.signature.SignatureVerifier.generate_signature          (slack-sdk, PyPI)
  stripe        stripe.WebhookSignature.generate_signature_header                 (stripe, PyPI)
  twilio        twilio.request_validator.RequestValidator.compute_signature      (twilio, PyPI)
  svix          svix.webhooks.Webhook.sign                                        (svix, PyPI)
  standard-webhooks  standardwebhooks.webhooks.Webhook.sign (v1); v1a is signed with pyca/cryptography's Ed25519
                as the spec defines it: the Python reference library cannot sign or verify v1a
  paddle        paddle_billing.Notifications.PaddleSignature.calculate_hmac: the SDK only verifies, and this is
                the function its verifier signs with; its Verifier then checks what we send
  github, github-sha1, shopify, gitlab: their libraries are on npm (@octokit/webhooks, @shopify/shopify-api),
                which is not reachable here: the documented algorithm with Python's hmac (GitHub's documented
                vector and the rest are in Tests/WebhookCoreTests)

Usage: senders.py PATH/TO/webhook-handler
"""
import base64, datetime, hashlib, hmac, http.client, json, os, subprocess, sys, tempfile, time, urllib.parse

import slack_sdk.signature
import standardwebhooks.webhooks
import stripe
import svix.webhooks
import twilio.request_validator
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paddle_billing.Notifications import Secret as PaddleSecret, Verifier as PaddleVerifier
from paddle_billing.Notifications.PaddleSignature import PaddleSignature

from checks import Checks, wait_until
from nginx_server import Nginx, started

HANDLER = os.path.realpath(sys.argv[1])
checks = Checks()
expect = checks.expect


def whsec(seed):
    return "whsec_" + base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()


# Each sender's current and previous secret, in that order, as its NAME.secret holds them; and a stranger's.
SECRETS = {
    "slack": ["8f742231b10e8888abcd99yyyzzz85a5", "0ld5lack5ecret000000"],
    "stripe": ["whsec_stripe_current_0123456789", "whsec_stripe_previous_0123456789"],
    "twilio": ["twilio-auth-token-current-01", "twilio-auth-token-previous-01"],
    "svix": [whsec("svix-current"), whsec("svix-previous")],
    "standard-webhooks": [whsec("sw-current"), whsec("sw-previous")],
    "paddle": ["pdl_ntfset_01current_abcdefghijklmnop", "pdl_ntfset_01previous_abcdefghijklmnop"],
    "github": ["It's a Secret to Everybody", "an older GitHub secret"],
    "github-sha1": ["It's a Secret to Everybody", "an older GitHub secret"],
    "shopify": ["shpss_current_0123456789abcdef", "shpss_previous_0123456789abcdef"],
    "gitlab": ["gitlab-token-current-0123", "gitlab-token-previous-0123"],
}
STRANGER = {name: whsec("stranger") if keys[0].startswith("whsec_") else "a-stranger's-secret" for name, keys in SECRETS.items()}
# Two v1a key pairs, both trusted (a rotation), and a third that is not.
V1A = [Ed25519PrivateKey.generate() for _ in range(3)]


def whpk(private):
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "whpk_" + base64.b64encode(raw).decode()


def sign(sender, secret, body, timestamp, msg_id, url):
    """The headers the sender's own code puts on `body` (bytes), and the body to send."""
    text = body.decode()
    if sender == "slack":
        verifier = slack_sdk.signature.SignatureVerifier(secret)
        return {"X-Slack-Request-Timestamp": str(timestamp),
                "X-Slack-Signature": verifier.generate_signature(timestamp=str(timestamp), body=text)}, body
    if sender == "stripe":
        return {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(text, secret, timestamp)}, body
    if sender == "twilio":
        params = {"CallSid": "CA" + msg_id, "From": "+14155550100", "To": "+14155550199", "Body": text}
        form = urllib.parse.urlencode(params).encode()
        signature = twilio.request_validator.RequestValidator(secret).compute_signature(url, params)
        return {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}, form
    if sender in ("svix", "standard-webhooks"):
        module = svix.webhooks if sender == "svix" else standardwebhooks.webhooks
        when = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
        prefix = "svix" if sender == "svix" else "webhook"
        return {prefix + "-id": msg_id, prefix + "-timestamp": str(timestamp),
                prefix + "-signature": module.Webhook(secret).sign(msg_id, when, text)}, body
    if sender == "v1a":
        signature = secret.sign(("%s.%d." % (msg_id, timestamp)).encode() + body)
        return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": "v1a," + base64.b64encode(signature).decode()}, body
    if sender == "paddle":
        h1 = PaddleSignature.calculate_hmac(secret, b"%d:" % timestamp + body).hexdigest()
        return {"Paddle-Signature": "ts=%d;h1=%s" % (timestamp, h1)}, body
    if sender == "github":
        return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
                "X-GitHub-Delivery": msg_id}, body
    if sender == "github-sha1":
        return {"X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()}, body
    if sender == "shopify":
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode(),
                "X-Shopify-Webhook-Id": msg_id}, body
    if sender == "gitlab":
        return {"X-Gitlab-Token": secret}, body
    raise ValueError(sender)


def post(port, path, headers, body):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    try:
        return answer.status, json.loads(data)
    except ValueError:
        return answer.status, {"raw": data.decode(errors="replace")}


def paddle_sdk_accepts(headers, body):
    """Paddle's own Verifier (only verifies) checks what we send: proof that calculate_hmac is how Paddle signs."""
    class Request:
        pass
    request = Request()
    request.headers, request.body = headers, body
    return PaddleVerifier().verify(request, PaddleSecret(SECRETS["paddle"][0]))


def main():
    with tempfile.TemporaryDirectory(prefix="webhook-senders-") as work:
        os.chmod(work, 0o755)
        socket_path, spool, senders = (os.path.join(work, name) for name in ("handler.sock", "spool", "senders"))
        os.mkdir(senders, 0o700)
        for name, keys in SECRETS.items():
            with open(os.path.join(senders, name + ".secret"), "w") as f:
                f.write("\n".join(keys) + "\n")
        with open(os.path.join(senders, "standard-webhooks.public-keys"), "w") as f:
            f.write("%s\n%s\n" % (whpk(V1A[0]), whpk(V1A[1])))
        log_path = os.path.join(work, "handler.log")
        log = open(log_path, "ab")
        handler = subprocess.Popen([HANDLER, "--listen", socket_path, "--socket-mode", "0666", "--workers", "2",
                                    "--spool-dir", spool, "--secrets-dir", senders],
                                   env={"PATH": "/usr/bin:/bin"}, stdout=log, stderr=log)
        nginx = None
        try:
            started(lambda: os.path.exists(socket_path), "the handler's socket")
            nginx = Nginx(work, socket_path, "webhook-senders.conf")
            run(nginx.port, spool)
            expect("nginx's error log is clean", not nginx.problems(), nginx.problems()[:3])
        finally:
            if nginx:
                nginx.stop()
            handler.terminate()
            handler.wait(timeout=60)
            with open(log_path, errors="replace") as f:
                text = f.read()
            leaked = [name for name, keys in SECRETS.items() if any(key in text for key in keys)]
            expect("the handler's log holds no sender's secret", not leaked, leaked)
    return checks.summary()


def stored(spool, answer, body):
    """The payload the 200 named is in the spool with exactly the bytes sent."""
    path = os.path.join(spool, "new", answer.get("id", "?"))
    return wait_until(lambda: os.path.exists(path)) and open(path, "rb").read().partition(b"\n")[2] == body


def run(port, spool):
    now = int(time.time())
    for sender in list(SECRETS) + ["v1a"]:
        location = "/api/" + ("standard-webhooks" if sender == "v1a" else sender)
        url = "http://127.0.0.1:%d%s" % (port, location)
        current, previous = (V1A[0], V1A[1]) if sender == "v1a" else SECRETS[sender]
        stranger = V1A[2] if sender == "v1a" else STRANGER[sender]
        dated = sender in ("slack", "stripe", "svix", "standard-webhooks", "v1a", "paddle")
        tolerance = 5 if sender == "paddle" else 300
        n = [0]

        def deliver(secret, timestamp=None, tamper=False):
            n[0] += 1
            msg_id = "msg_%s_%d_%d" % (sender.replace("-", ""), now, n[0])
            body = json.dumps({"sender": sender, "n": n[0], "at": now}).encode()
            headers, sent = sign(sender, secret, body, timestamp or int(time.time()), msg_id, url)
            if tamper:
                sent = sent.replace(b"n%22%3A+" if sender == "twilio" else b'"n": ', b"n%22%3A+9" if sender == "twilio" else b'"n": 9')
            return post(port, location, headers, sent), headers, sent

        (status, answer), headers, sent = deliver(current)
        expect("%s: signed by its own code is 200 and stored" % sender,
               status == 200 and answer.get("verified") and stored(spool, answer, sent), (status, answer))
        if sender == "paddle":
            expect("paddle: its own SDK's Verifier accepts the same request", paddle_sdk_accepts(headers, sent))
        (status, answer), _, _ = deliver(current, tamper=True)
        if sender == "gitlab":
            # A shared token signs nothing: GitLab's scheme proves the sender, not the body.
            expect("gitlab: a token proves the sender only (a changed body is still 200)", status == 200, (status, answer))
        else:
            expect("%s: a tampered body is 400" % sender,
                   status == 400 and "does not match" in answer.get("reason", ""), (status, answer))
        (status, answer), _, _ = deliver(stranger)
        expect("%s: a wrong key is 400" % sender, status == 400 and "does not match" in answer.get("reason", ""),
               (status, answer))
        (status, answer), _, sent = deliver(previous)
        expect("%s: the rotated (previous) key is 200 and stored" % sender,
               status == 200 and stored(spool, answer, sent), (status, answer))
        if dated:
            for label, skew in (("stale", -(tolerance + 60)), ("future", tolerance + 60)):
                (status, answer), _, _ = deliver(current, timestamp=int(time.time()) + skew)
                expect("%s: a %s timestamp (%+d s) is 400" % (sender, label, skew),
                       status == 400 and "seconds from now" in answer.get("reason", ""), (status, answer))
    # Standard Webhooks: an unknown version is skipped, a valid signature later in the list still verifies.
    body = b'{"list":true}'
    headers, _ = sign("standard-webhooks", SECRETS["standard-webhooks"][0], body, int(time.time()), "msg_list", "")
    headers["webhook-signature"] = "v2,AAAA v1,Zm9vYmFy " + headers["webhook-signature"]
    status, answer = post(port, "/api/standard-webhooks", headers, body)
    expect("standard-webhooks: the list is tried whole, unknown versions skipped", status == 200, (status, answer))
    # svix-* headers at the standard-webhooks location (aliases).
    headers, _ = sign("svix", SECRETS["standard-webhooks"][0], body, int(time.time()), "msg_alias", "")
    status, answer = post(port, "/api/standard-webhooks", headers, body)
    expect("standard-webhooks: Svix's header names are aliases", status == 200, (status, answer))


if __name__ == "__main__":
    sys.exit(main())
