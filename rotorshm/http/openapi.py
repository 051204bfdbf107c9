"""The OpenAPI 3.1 description served at /openapi.json."""

from __future__ import annotations

from typing import Any

from .. import __version__

_ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/Error"}}}}


def _int_param(name: str, where: str, desc: str, required: bool = True, minimum: int = 0
               ) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": desc,
            "schema": {"type": "integer", "minimum": minimum}}


def _proof_response(desc: str) -> dict[str, Any]:
    return {"200": {
        "description": desc + "; X-Rotorshm-Size and X-Rotorshm-Root give the snapshot "
                              "it was made from",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ProofEnvelope"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }},
        "400": _ERROR, "404": _ERROR, "503": _ERROR}


def openapi(name: str, max_body: int) -> dict[str, Any]:
    """The OpenAPI document of the server of tree `name`."""
    index = _int_param("index", "path", "leaf index (0-based)")
    return {
        "openapi": "3.1.0",
        "info": {"title": f"rotorshm tree {name}", "version": __version__,
                 "description": "Inclusion and consistency proofs, leaves and tiles of an "
                                "append-only N-ary Merkle tree (LeanIMT). JSON by default, "
                                "binary with Accept: application/octet-stream."},
        "paths": {
            "/v1/root": {"get": {"summary": "current size, root and sequence numbers",
                                 "responses": {"200": {"description": "the root", "content": {
                                     "application/json": {"schema": {
                                         "$ref": "#/components/schemas/Root"}}}},
                                     "503": _ERROR}}},
            "/v1/proof/{index}": {"get": {
                "summary": "inclusion proof of a leaf",
                "parameters": [index, _int_param("size", "query", "tree size to prove "
                                                 "against (default: current)", False, 1)],
                "responses": _proof_response("the inclusion proof")}},
            "/v1/consistency": {"get": {
                "summary": "consistency proof between two tree sizes",
                "parameters": [_int_param("from", "query", "old size", True, 1),
                               _int_param("to", "query", "new size (default: current)",
                                          False, 1)],
                "responses": _proof_response("the consistency proof")}},
            "/v1/leaf/{index}": {"get": {
                "summary": "one leaf", "parameters": [index],
                "responses": {"200": {"description": "the leaf (32 bytes in binary)"},
                              "400": _ERROR, "404": _ERROR}}},
            "/v1/tile/{level}/{index}": {"get": {
                "summary": "a complete 4 KiB chunk (128 nodes) of a level: immutable once "
                           "durable (no-cache with the same strong ETag before)",
                "parameters": [_int_param("level", "path", "tree level (0 = leaves)"),
                               _int_param("index", "path", "chunk index in the level")],
                "responses": {"200": {"description": "4096 bytes; Cache-Control immutable and "
                                                     "a strong ETag"},
                              "304": {"description": "If-None-Match matched"},
                              "400": _ERROR, "404": _ERROR}}},
            "/v1/tile/{level}/{index}.p/{width}": {"get": {
                "summary": "the first width nodes of an incomplete chunk: no-cache",
                "parameters": [_int_param("level", "path", "tree level (0 = leaves)"),
                               _int_param("index", "path", "chunk index in the level"),
                               _int_param("width", "path", "nodes, 1..127", minimum=1)],
                "responses": {"200": {"description": "width x 32 bytes"},
                              "400": _ERROR, "404": _ERROR}}},
            "/v1/leaves": {"post": {
                "summary": "append leaves through the writer daemon",
                "security": [{"bearer": []}],
                "parameters": [{"name": "durable", "in": "query", "required": False,
                                "description": "1: answer once the batch is durable",
                                "schema": {"type": "integer", "enum": [0, 1]}}],
                "requestBody": {"required": True, "description": f"at most {max_body} bytes",
                                "content": {
                                    "application/octet-stream": {"schema": {
                                        "type": "string", "format": "binary",
                                        "description": "whole 32-byte leaves"}},
                                    "application/json": {"schema": {
                                        "type": "object", "required": ["leaves"],
                                        "properties": {"leaves": {"type": "array", "items": {
                                            "type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}}}},
                                }},
                "responses": {"200": {"description": "seq, size, root after the batch"},
                              "400": _ERROR, "401": _ERROR, "403": _ERROR, "413": _ERROR,
                              "503": _ERROR}}},
            "/healthz": {"get": {"summary": "200 while the worker holds a snapshot",
                                 "responses": {"200": {"description": "healthy"},
                                               "503": {"description": "no snapshot"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics of every worker",
                                 "responses": {"200": {"description": "text exposition"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error", "status"], "properties": {
                    "error": {"type": "string"}, "status": {"type": "integer"}}},
                "Root": {"type": "object", "properties": {
                    "size": {"type": "integer"}, "root": {"type": ["string", "null"]},
                    "arity": {"type": "integer"}, "depth": {"type": "integer"},
                    "epoch": {"type": "integer"}, "published_seq": {"type": "integer"},
                    "durable_seq": {"type": "integer"}, "durable_size": {"type": "integer"},
                    "writer_alive": {"type": "boolean"}}},
                "ProofEnvelope": {"type": "object", "properties": {
                    "size": {"type": "integer", "description": "size of the snapshot"},
                    "root": {"type": "string", "description": "root of the snapshot (hex)"},
                    "proof": {"type": "object", "description": "the proof's to_json form"}}},
            },
        },
    }
