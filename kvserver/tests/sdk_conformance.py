#!/usr/bin/env python3
"""Conformance test: Microsoft's Key Vault SDK for Python, unmodified, against aepg-kvserver.

Usage: sdk_conformance.py INFO_JSON

INFO_JSON is the file `aepg-kvserver --info INFO_JSON --key sdk-key --disabled-key disabled-key`
writes. Needs `pip install azure-keyvault-keys` (which brings azure-core, requests and
cryptography). Exits 0 when every check passes; otherwise prints each failure and exits 1.

Two client settings are needed because the vault is https://localhost:PORT, not *.vault.azure.net:
- `connection_verify=<ca_file>`: trust the server's own CA;
- `verify_challenge_resource=False`: the SDK checks that the challenge's resource
  (https://vault.azure.net) is a parent domain of the vault's host, and refuses the challenge
  otherwise (checked below).
"""

import hashlib
import json
import sys
import time
import traceback

import requests
from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.keys import KeyClient, KeyType
from azure.keyvault.keys.crypto import (
    CryptographyClient,
    EncryptionAlgorithm,
    KeyWrapAlgorithm,
    SignatureAlgorithm,
)

VAULT_SCOPE = "https://vault.azure.net/.default"

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print(f"FAIL: {message}")


def step(function):
    """Runs one named check, recording an unexpected exception as a failure."""
    print(f"--- {function.__name__}")
    try:
        function()
    except Exception:  # pylint:disable=broad-except
        failures.append(f"{function.__name__} raised:\n{traceback.format_exc()}")
        print(f"FAIL: {function.__name__} raised:\n{traceback.format_exc()}")
    return function


class ClientSecretCredential:
    """A minimal azure.core TokenCredential over the server's client-secret token endpoint
    (the shape of Entra ID's v2 endpoint). Records every get_token call."""

    def __init__(self, info):
        self.info = info
        self.calls = []

    def get_token(self, *scopes, claims=None, tenant_id=None, enable_cae=False, **kwargs):
        self.calls.append({"scopes": scopes, "tenant_id": tenant_id})
        response = requests.post(
            f"{self.info['vault_url']}/{tenant_id or self.info['tenant']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.info["client_id"],
                "client_secret": self.info["client_secret"],
                "scope": " ".join(scopes),
            },
            verify=self.info["ca_file"],
            timeout=30,
        )
        response.raise_for_status()
        body = response.json()
        return AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))


class StaticCredential:
    """A caller-supplied token: the one the server pre-issued."""

    def __init__(self, token):
        self.token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3000)


def main(info_path):
    with open(info_path, encoding="utf-8") as file:
        info = json.load(file)
    vault_url = info["vault_url"]
    ca_file = info["ca_file"]
    # One credential for the KeyClient, to count its token requests; one for the rest.
    keys_credential = ClientSecretCredential(info)
    credential = ClientSecretCredential(info)
    options = {"verify_challenge_resource": False, "connection_verify": ca_file}
    keys = KeyClient(vault_url, keys_credential, **options)
    state = {}

    @step
    def get_key():
        key = keys.get_key("sdk-key")
        state["key"] = key
        check(key.id == info["keys"]["sdk-key"], f"key id {key.id} != {info['keys']['sdk-key']}")
        check(key.name == "sdk-key", f"key name {key.name}")
        check(key.id == f"{vault_url}/keys/sdk-key/{key.properties.version}", f"key id {key.id}")
        check(key.key_type == KeyType.rsa, f"key type {key.key_type}")
        check(key.properties.enabled is True, "key not enabled")
        check(key.properties.created_on is not None, "no created_on")
        check(key.properties.recovery_level == "Recoverable+Purgeable", "recovery level")
        check(len(key.key.n) == 256, f"modulus is {len(key.key.n)} bytes")
        check(key.key.e == b"\x01\x00\x01", f"exponent {key.key.e!r}")
        for operation in ("encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"):
            check(operation in key.key_operations, f"{operation} missing from key_ops")
        versioned = keys.get_key("sdk-key", key.properties.version)
        check(versioned.id == key.id, "get_key with a version")

    @step
    def create_rsa_key():
        created = keys.create_rsa_key("sdk-created", size=3072, tags={"purpose": "conformance"})
        check(created.key_type == KeyType.rsa, f"created key type {created.key_type}")
        check(len(created.key.n) == 384, f"created modulus is {len(created.key.n)} bytes")
        check(created.properties.tags == {"purpose": "conformance"}, "tags not echoed")
        fetched = keys.get_key("sdk-created")
        check(fetched.id == created.id, "created key is not the current version")

    cek = bytes(range(32))
    digest = hashlib.sha256(b"aepg column master key metadata").digest()

    @step
    def wrap_locally_unwrap_remotely():
        # Given a KeyVaultKey, the SDK wraps with the public key itself (pyca/cryptography)
        # and sends only unwrap to the vault: the server must use standard RSA-OAEP(-256).
        crypto = CryptographyClient(state["key"], credential, **options)
        for algorithm in (KeyWrapAlgorithm.rsa_oaep_256, KeyWrapAlgorithm.rsa_oaep):
            wrapped = crypto.wrap_key(algorithm, cek)
            check(len(wrapped.encrypted_key) == 256, f"{algorithm} wrapped length")
            unwrapped = crypto.unwrap_key(algorithm, wrapped.encrypted_key)
            check(unwrapped.key == cek, f"{algorithm} local wrap / remote unwrap mismatch")

    @step
    def sign_remotely_verify_locally():
        # The SDK signs in the vault and verifies locally with PSS, MGF1-SHA-256, 32-byte salt.
        crypto = CryptographyClient(state["key"], credential, **options)
        signed = crypto.sign(SignatureAlgorithm.ps256, digest)
        check(len(signed.signature) == 256, "signature length")
        check(crypto.verify(SignatureAlgorithm.ps256, digest, signed.signature).is_valid,
              "PS256 signature does not verify locally")
        tampered = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
        check(not crypto.verify(SignatureAlgorithm.ps256, digest, tampered).is_valid,
              "tampered signature verifies locally")
        state["signature"] = signed.signature

    @step
    def every_operation_remotely():
        # A versionless key id makes the SDK address the current version as
        # /keys/sdk-key//{operation}. Marking the client initialised stops it from fetching
        # the key for local cryptography, so every operation goes to the server.
        crypto = CryptographyClient(f"{vault_url}/keys/sdk-key", credential, **options)
        crypto._initialized = True  # pylint:disable=protected-access
        for algorithm in (KeyWrapAlgorithm.rsa_oaep_256, KeyWrapAlgorithm.rsa_oaep):
            wrapped = crypto.wrap_key(algorithm, cek)
            unwrapped = crypto.unwrap_key(algorithm, wrapped.encrypted_key)
            check(unwrapped.key == cek, f"remote {algorithm} round trip")
        encrypted = crypto.encrypt(EncryptionAlgorithm.rsa_oaep_256, b"plaintext")
        decrypted = crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, encrypted.ciphertext)
        check(decrypted.plaintext == b"plaintext", "remote encrypt/decrypt round trip")
        signed = crypto.sign(SignatureAlgorithm.ps256, digest)
        check(crypto.verify(SignatureAlgorithm.ps256, digest, signed.signature).is_valid,
              "remote verify of a remote signature")
        check(crypto.verify(SignatureAlgorithm.ps256, digest, state["signature"]).is_valid,
              "remote verify of an earlier signature")
        other = hashlib.sha256(b"something else").digest()
        check(not crypto.verify(SignatureAlgorithm.ps256, other, signed.signature).is_valid,
              "remote verify accepts a signature over another digest")

    @step
    def unknown_key_is_not_found():
        try:
            keys.get_key("no-such-key")
            check(False, "get_key of an unknown key did not raise")
        except ResourceNotFoundError as error:
            check(error.status_code == 404, f"unknown key status {error.status_code}")
            check(error.error is not None and error.error.code == "KeyNotFound",
                  f"unknown key error code {error.error and error.error.code}")

    @step
    def disabled_key_is_forbidden():
        try:
            keys.get_key("disabled-key")
            check(False, "get_key of a disabled key did not raise")
        except ResourceNotFoundError:
            check(False, "a disabled key raised ResourceNotFoundError")
        except HttpResponseError as error:
            check(error.status_code == 403, f"disabled key status {error.status_code}")
            check(error.error is not None and error.error.code == "Forbidden",
                  f"disabled key error code {error.error and error.error.code}")
        # Refused the key for local use (403), the client goes remote and is refused again.
        crypto = CryptographyClient(info["keys"]["disabled-key"], credential, **options)
        try:
            crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, bytes(256))
            check(False, "unwrap with a disabled key did not raise")
        except HttpResponseError as error:
            check(error.status_code == 403, f"disabled unwrap status {error.status_code}")

    @step
    def bad_ciphertext_is_a_bad_parameter():
        crypto = CryptographyClient(state["key"], credential, **options)
        try:
            crypto.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, bytes(256))
            check(False, "unwrapping garbage did not raise")
        except HttpResponseError as error:
            check(error.status_code == 400, f"garbage unwrap status {error.status_code}")
            check(error.error is not None and error.error.code == "BadParameter",
                  f"garbage unwrap error code {error.error and error.error.code}")

    @step
    def pre_issued_token():
        client = KeyClient(vault_url, StaticCredential(info["token"]), **options)
        check(client.get_key("sdk-key").id == state["key"].id, "get_key with the pre-issued token")

    @step
    def challenge_resource_is_verified_by_default():
        # Documents why verify_challenge_resource=False is needed (a fresh host name avoids
        # the SDK's process-wide challenge cache, which is keyed by host and port).
        client = KeyClient(vault_url.replace("localhost", "127.0.0.1"), credential,
                           connection_verify=ca_file)
        try:
            client.get_key("sdk-key")
            check(False, "the SDK accepted a vault.azure.net challenge from localhost")
        except ValueError as error:
            check("does not match the requested domain" in str(error), f"unexpected: {error}")

    @step
    def tokens_come_from_the_challenge():
        # The challenge names the scope and tenant; the KeyClient's challenge policy asked
        # its credential once and reused the token for all its requests.
        for call in keys_credential.calls + credential.calls:
            check(call["scopes"] == (VAULT_SCOPE,), f"token requested for {call['scopes']}")
            check(call["tenant_id"] == info["tenant"], f"token requested for tenant {call['tenant_id']}")
        check(len(keys_credential.calls) == 1,
              f"the KeyClient requested {len(keys_credential.calls)} tokens, not 1")

    if failures:
        print(f"\n{len(failures)} conformance check(s) failed")
        return 1
    print("\nall conformance checks passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
