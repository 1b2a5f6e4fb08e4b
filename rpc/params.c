// SPDX-License-Identifier: Apache-2.0
/*
 * Typed access to a request's named parameters.  Each helper checks one
 * parameter and, when it is wrong, fails the request with -32602 and a
 * message naming the parameter and what was expected, so a client author
 * reads "params.timeout_ms: expected a non-negative integer up to 300000".
 * Unknown parameter names are refused too: a typo must not be ignored.
 */
#include "rpc/rpc-internal.h"

#include <stdlib.h>
#include <string.h>

int rpc__params_only(rpc_req_t *req, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach (req->params, key, v) {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(*a, key);
        if (!ok)
            return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: unknown parameter '%.64s'",
                                  key);
    }
    return 0;
}

int rpc__param_str(rpc_req_t *req, const char *key, bool required, const char **out)
{
    json_t *v = json_object_get(req->params, key);
    if (!v || json_is_null(v)) {
        if (required)
            return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: '%s' is required", key);
        return 0;
    }
    if (!json_is_string(v))
        return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: '%s' must be a string", key);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: '%s' contains a NUL byte", key);
    *out = json_string_value(v);
    return 0;
}

int rpc__param_uint(rpc_req_t *req, const char *key, bool required, uint64_t max, uint64_t *out)
{
    json_t *v = json_object_get(req->params, key);
    if (!v || json_is_null(v)) {
        if (required)
            return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: '%s' is required", key);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return rpc__req_error(req, RPC_E_PARAMS,
                              "Invalid params: '%s' must be an integer from 0 to %llu", key,
                              (unsigned long long)max);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int rpc__param_bool(rpc_req_t *req, const char *key, bool *out)
{
    json_t *v = json_object_get(req->params, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: '%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

int rpc__param_strv(rpc_req_t *req, const char *key, bool required, const char ***out)
{
    json_t *v = json_object_get(req->params, key);
    if (!v || json_is_null(v)) {
        if (required)
            return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: '%s' is required", key);
        return 0;
    }
    if (!json_is_array(v) || (required && json_array_size(v) == 0))
        return rpc__req_error(req, RPC_E_PARAMS,
                              "Invalid params: '%s' must be a%s array of strings", key,
                              required ? " non-empty" : "n");
    size_t n = json_array_size(v);
    if (n > 4096)
        return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: '%s' has more than 4096 items",
                              key);
    const char **vec = calloc(n + 1, sizeof(char *));
    if (!vec)
        return rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(v, i);
        if (!json_is_string(s) || strlen(json_string_value(s)) != json_string_length(s)) {
            free(vec);
            return rpc__req_error(req, RPC_E_PARAMS,
                                  "Invalid params: '%s'[%zu] must be a string without NUL bytes",
                                  key, i);
        }
        vec[i] = json_string_value(s);
    }
    *out = vec;
    return 0;
}

int rpc__param_bytes(rpc_req_t *req, const char *key, size_t max, void **data, size_t *len,
                     bool *given)
{
    char k64[80];
    snprintf(k64, sizeof(k64), "%s_base64", key);
    json_t *t = json_object_get(req->params, key), *b = json_object_get(req->params, k64);
    *given = false;
    if (t && b)
        return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: give '%s' or '%s', not both", key,
                              k64);
    if ((t && !json_is_string(t)) || (b && !json_is_string(b)))
        return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: '%s' must be a string",
                              t ? key : k64);
    if (t) {
        size_t n = json_string_length(t);
        if (n > max)
            return rpc__req_error(req, RPC_E_LIMIT, "'%s' has %zu bytes, the limit is %zu", key, n,
                                  max);
        *data = malloc(n ? n : 1);
        if (!*data)
            return rpc__req_error(req, RPC_E_INTERNAL, "out of memory");
        memcpy(*data, json_string_value(t), n);
        *len = n;
        *given = true;
    } else if (b) {
        if (rpc_base64_decode(json_string_value(b), json_string_length(b), data, len) < 0)
            return rpc__req_error(req, RPC_E_PARAMS, "Invalid params: '%s' is not valid base64",
                                  k64);
        if (*len > max) {
            free(*data);
            *data = NULL;
            return rpc__req_error(req, RPC_E_LIMIT, "'%s' has %zu bytes, the limit is %zu", k64,
                                  *len, max);
        }
        *given = true;
    }
    return 0;
}

void rpc__set_bytes(json_t *obj, const char *key, const void *data, size_t len, bool force_b64)
{
    if (!force_b64) {
        json_t *s = json_stringn(data ? data : "", len); /* NULL unless valid UTF-8 */
        if (s) {
            json_object_set_new(obj, key, s);
            return;
        }
    }
    char k64[80];
    snprintf(k64, sizeof(k64), "%s_base64", key);
    size_t n = 0;
    char *enc = rpc_base64_encode(data, len, &n);
    if (enc)
        json_object_set_new(obj, k64, json_stringn(enc, n));
    free(enc);
}
