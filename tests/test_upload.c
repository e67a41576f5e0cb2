/*
 * test_upload.c: api/upload.c's parsing of the three upload body forms,
 * from a table: every field rule, every refusal, and that the .p8 comes out
 * byte for byte (JSON escapes decoded, multipart CRLFs kept).
 */
#include "api/upload.h"

#include "common/err.h"
#include "tests/check.h"

#define PEM "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49" \
    "AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
/* The same, as a JSON string literal's contents. */
#define PEM_JSON "-----BEGIN PRIVATE KEY-----\\n" \
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49" \
    "AwEHBG0wawIBAQQg\\n-----END PRIVATE KEY-----\\n"

#define JSON "application/json"
#define MP "multipart/form-data; boundary=XyZ"
#define RAW "application/x-pem-file"
#define KID "ABCDE12345"
#define TID "TEAM123456"

/* Multipart pieces (boundary XyZ). */
#define PART(name) "--XyZ\r\nContent-Disposition: form-data; name=\"" name \
    "\"\r\n\r\n"
#define FILEPART(fn) "--XyZ\r\nContent-Disposition: form-data; name=\"p8\"; " \
    "filename=\"" fn "\"\r\nContent-Type: application/octet-stream\r\n\r\n"
#define END "--XyZ--\r\n"
#define MP_IDS PART("key_id") KID "\r\n" PART("team_id") TID "\r\n"

#define JSON_NUL "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\"," \
    "\"p8\":\"x\"}\0"

/* The success-only columns of a case that expects an error. */
#define NO_FIELDS NULL, KEY_ENV_BOTH, 0, 0, 0

#define QMAX 12

struct parse_case {
	const char *what;
	const char *ctype;
	const char *disposition;
	const char *body;
	size_t body_len;            /* 0: strlen(body) */
	const char *query[QMAX];    /* name, value, ..., NULL */
	int want;
	/* Checked when want == 0; NULL/0 fields take their defaults. */
	const char *p8;             /* NULL: PEM */
	enum key_env env;
	uint32_t services;          /* 0: KEY_SERVICE_APNS */
	size_t n_topics;
	int inactive;               /* 1: activate must be 0 */
};

static const struct parse_case cases[] = {
	/* -- JSON ------------------------------------------------------ */
	{ "json minimal", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\""
	    PEM_JSON "\"}", 0, { NULL }, 0, NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "json every field", "Application/JSON; charset=UTF-8", NULL,
	    " { \"activate\" : false , \"topics\": [\"com.a\", \"com.b\"],"
	    "\"services\":[\"apns\",\"devicecheck\"],\"environment\":"
	    "\"production\",\"p8\" :\"" PEM_JSON "\", \"team_id\":\"" TID
	    "\",\"key_id\":\"" KID "\"}\n", 0, { NULL }, 0, NULL,
	    KEY_ENV_PRODUCTION, KEY_SERVICE_APNS | KEY_SERVICE_DEVICECHECK, 2,
	    1 },
	{ "json null optionals", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\""
	    PEM_JSON "\",\"environment\":null,\"services\":null,\"topics\":"
	    "null,\"activate\":null}", 0, { NULL }, 0, NULL, KEY_ENV_BOTH, 0,
	    0, 0 },
	{ "json escapes in p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":"
	    "\"a\\/b\\\\c\\\"d\\u0041\\u00e9\\ud83d\\ude00\\t\\r\\n\"}", 0,
	    { NULL }, 0, "a/b\\c\"dA\xc3\xa9\xf0\x9f\x98\x80\t\r\n",
	    KEY_ENV_BOTH, 0, 0, 0 },
	{ "json escaped member name p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p\\u0038\":\""
	    PEM_JSON "\"}", 0, { NULL }, 0, NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "json raw UTF-8 in p8 kept", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":"
	    "\"\xc3\xa9\"}", 0, { NULL }, 0, "\xc3\xa9", KEY_ENV_BOTH, 0, 0,
	    0 },
	{ "json empty p8 is present", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"\"}", 0,
	    { NULL }, 0, "", KEY_ENV_BOTH, 0, 0, 0 },
	{ "json one topic", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\""
	    PEM_JSON "\",\"topics\":[\"x\"]}", 0, { NULL }, 0, NULL,
	    KEY_ENV_BOTH, 0, 1, 0 },
	{ "json filename query matches", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\""
	    PEM_JSON "\"}", 0, { "filename", "AuthKey_" KID ".p8", NULL }, 0,
	    NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "json filename query mismatch", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\""
	    PEM_JSON "\"}", 0, { "filename", "AuthKey_ZZZZZ99999.p8", NULL },
	    P8V_ERR_KEY_ID_MISMATCH, NO_FIELDS },
	{ "json other file name ignored", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\""
	    PEM_JSON "\"}", 0, { "filename", "AuthKey_ZZZ.p8", NULL }, 0,
	    NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "json missing key_id", JSON, NULL,
	    "{\"team_id\":\"" TID "\",\"p8\":\"" PEM_JSON "\"}", 0, { NULL },
	    P8V_ERR_MISSING_FIELD, NO_FIELDS },
	{ "json missing team_id", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"p8\":\"" PEM_JSON "\"}", 0, { NULL },
	    P8V_ERR_MISSING_FIELD, NO_FIELDS },
	{ "json missing p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\"}", 0, { NULL },
	    P8V_ERR_MISSING_FIELD, NO_FIELDS },
	{ "json null p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":null}", 0,
	    { NULL }, P8V_ERR_MISSING_FIELD, NO_FIELDS },
	{ "json null key_id", JSON, NULL,
	    "{\"key_id\":null,\"team_id\":\"" TID "\",\"p8\":\"x\"}", 0,
	    { NULL }, P8V_ERR_MISSING_FIELD, NO_FIELDS },
	{ "json unknown member", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\""
	    PEM_JSON "\",\"name\":\"x\"}", 0, { NULL },
	    P8V_ERR_UNKNOWN_FIELD, NO_FIELDS },
	{ "json p8 inside an unknown member", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"x\":{\"p8\":"
	    "\"y\"},\"p8\":\"z\"}", 0, { NULL }, P8V_ERR_UNKNOWN_FIELD,
	    NO_FIELDS },
	{ "json key_id number", JSON, NULL,
	    "{\"key_id\":1,\"team_id\":\"" TID "\",\"p8\":\"x\"}", 0, { NULL },
	    P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json p8 number", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":5}", 0,
	    { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json p8 array", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":[\"x\"]}",
	    0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json services a string", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"services\":\"apns\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "json topics of numbers", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"topics\":[1]}", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json activate a string", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"activate\":\"false\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "json environment unknown", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"environment\":\"staging\"}", 0, { NULL }, P8V_ERR_BAD_FIELD,
	    NO_FIELDS },
	{ "json environment empty", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"environment\":\"\"}", 0, { NULL }, P8V_ERR_BAD_FIELD,
	    NO_FIELDS },
	{ "json service unknown", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"services\":[\"push\"]}", 0, { NULL }, P8V_ERR_BAD_FIELD,
	    NO_FIELDS },
	{ "json services empty", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"services\":[]}", 0, { NULL }, P8V_ERR_BAD_FIELD, NO_FIELDS },
	{ "json service twice", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"services\":[\"maps\",\"maps\"]}", 0, { NULL },
	    P8V_ERR_BAD_FIELD, NO_FIELDS },
	{ "json every service", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\""
	    PEM_JSON "\",\"services\":[\"apns\",\"app_store_connect\","
	    "\"sign_in_with_apple\",\"musickit\",\"weatherkit\","
	    "\"devicecheck\",\"maps\"]}", 0, { NULL }, 0, NULL, KEY_ENV_BOTH,
	    KEY_SERVICE_ALL, 0, 0 },
	{ "json key_id in the query", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\"}", 0,
	    { "key_id", KID, NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json empty body", JSON, NULL, "", 0, { NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "json array", JSON, NULL, "[]", 0, { NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "json unterminated", JSON, NULL, "{\"key_id\":\"" KID "\"", 0,
	    { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json unterminated p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"p8\":\"abc}", 0, { NULL },
	    P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json trailing data", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\"}x", 0,
	    { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	/* PEM text anywhere but the top-level p8 string: refused before
	 * jansson copies it (p8_misplaced). */
	{ "json pem under P8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"P8\":\""
	    PEM_JSON "\"}", 0, { NULL }, P8V_ERR_P8_MISPLACED, NO_FIELDS },
	{ "json pem in a p8 array", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":[\""
	    PEM_JSON "\"]}", 0, { NULL }, P8V_ERR_P8_MISPLACED, NO_FIELDS },
	{ "json pem nested", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"x\":{\"y\":[1,{\"z\":\""
	    PEM_JSON "\"}]},\"team_id\":\"" TID "\"}", 0, { NULL },
	    P8V_ERR_P8_MISPLACED, NO_FIELDS },
	{ "json pem as a member name", JSON, NULL,
	    "{\"" PEM_JSON "\":1,\"key_id\":\"" KID "\"}", 0, { NULL },
	    P8V_ERR_P8_MISPLACED, NO_FIELDS },
	{ "json pem escaped, lower case, END only", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"note\":\"\\u002d----end private key-----\"}", 0, { NULL },
	    P8V_ERR_P8_MISPLACED, NO_FIELDS },
	{ "json pem in p8, then under P8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\""
	    PEM_JSON "\",\"P8\":\"" PEM_JSON "\"}", 0, { NULL },
	    P8V_ERR_P8_MISPLACED, NO_FIELDS },
	{ "json pem after the object", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\"}"
	    " \"" PEM_JSON "\"", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json pem in p8 and dashes elsewhere", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\""
	    PEM_JSON "\",\"topics\":[\"a-----b\"]}", 0, { NULL }, 0,
	    NULL, KEY_ENV_BOTH, 0, 1, 0 },
	{ "json member twice", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"key_id\":\"" KID "\",\"team_id\":\""
	    TID "\",\"p8\":\"x\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "json p8 twice", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"p8\":\"y\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json p8 twice, once escaped", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"\\u0070\\u0038\":\"y\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "json p8 then a number under its name", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"x\","
	    "\"p8\":1}", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json control character in p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"a\nb\"}",
	    0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json bad escape in p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"a\\xb\"}",
	    0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json lone surrogate in p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":"
	    "\"\\ud800x\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json low surrogate first in p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":"
	    "\"\\udc00\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json NUL escape in p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":"
	    "\"\\u0000\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json short unicode escape in p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":"
	    "\"\\u12\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json invalid UTF-8 in p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":\"\xff\"}",
	    0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json overlong UTF-8 in p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":"
	    "\"\xc0\xaf\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json UTF-8 surrogate in p8", JSON, NULL,
	    "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\",\"p8\":"
	    "\"\xed\xa0\x80\"}", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json NUL byte after the object", JSON, NULL, JSON_NUL,
	    sizeof(JSON_NUL) - 1, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "json charset latin1", "application/json; charset=iso-8859-1", NULL,
	    "{}", 0, { NULL }, P8V_ERR_UNSUPPORTED_MEDIA_TYPE, NO_FIELDS },
	{ "json bad parameters", "application/json; charset", NULL, "{}", 0,
	    { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	/* -- Content-Type -------------------------------------------- */
	{ "no content type", NULL, NULL, "{}", 0, { NULL },
	    P8V_ERR_UNSUPPORTED_MEDIA_TYPE, NO_FIELDS },
	{ "text/plain", "text/plain", NULL, PEM, 0, { NULL },
	    P8V_ERR_UNSUPPORTED_MEDIA_TYPE, NO_FIELDS },
	{ "application/jsonx", "application/jsonx", NULL, "{}", 0, { NULL },
	    P8V_ERR_UNSUPPORTED_MEDIA_TYPE, NO_FIELDS },
	{ "form-urlencoded", "application/x-www-form-urlencoded", NULL,
	    "key_id=x", 0, { NULL }, P8V_ERR_UNSUPPORTED_MEDIA_TYPE,
	    NO_FIELDS },
	{ "no subtype", "application", NULL, "{}", 0, { NULL },
	    P8V_ERR_UNSUPPORTED_MEDIA_TYPE, NO_FIELDS },
	{ "empty type", "/json", NULL, "{}", 0, { NULL },
	    P8V_ERR_UNSUPPORTED_MEDIA_TYPE, NO_FIELDS },
	/* -- multipart ------------------------------------------------ */
	{ "multipart file part", MP, NULL,
	    MP_IDS FILEPART("AuthKey_" KID ".p8") PEM "\r\n" END, 0, { NULL },
	    0, NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "multipart every field, file first", "Multipart/Form-Data; "
	    "boundary=\"XyZ\"; charset=utf-8", NULL,
	    FILEPART("key.p8") PEM "\r\n" MP_IDS PART("environment")
	    "development\r\n" PART("services") "apns, musickit\r\n"
	    PART("services") "maps\r\n" PART("topics") "com.a,com.b\r\n"
	    PART("topics") "com.c\r\n" PART("activate") "false\r\n" END
	    "epilogue", 0, { NULL }, 0, NULL, KEY_ENV_DEVELOPMENT,
	    KEY_SERVICE_APNS | KEY_SERVICE_MUSICKIT | KEY_SERVICE_MAPS, 3, 1 },
	{ "multipart p8 as a text part, CRLF kept", MP, NULL,
	    MP_IDS PART("p8") "a\r\nb\r\n\r\n" END, 0, { NULL }, 0,
	    "a\r\nb\r\n", KEY_ENV_BOTH, 0, 0, 0 },
	{ "multipart preamble", MP, NULL,
	    "This is a preamble.\r\n" MP_IDS FILEPART("x") PEM "\r\n" END, 0,
	    { NULL }, 0, NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "multipart transport padding and 8bit", MP, NULL,
	    "--XyZ  \r\nContent-Disposition: form-data; name=key_id\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n" KID "\r\n"
	    PART("team_id") TID "\r\n" FILEPART("x") PEM "\r\n" END, 0,
	    { NULL }, 0, NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "multipart empty optional parts", MP, NULL,
	    MP_IDS FILEPART("x") PEM "\r\n" PART("environment") "\r\n"
	    PART("services") "\r\n" PART("topics") "\r\n" PART("activate")
	    "\r\n" END, 0, { NULL }, 0, NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "multipart Windows path file name", MP, NULL,
	    MP_IDS FILEPART("C:\\keys\\AuthKey_" KID ".p8") PEM "\r\n" END,
	    0, { NULL }, 0, NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "multipart file name mismatch", MP, NULL,
	    MP_IDS FILEPART("AuthKey_ZZZZZ99999.p8") PEM "\r\n" END, 0,
	    { NULL }, P8V_ERR_KEY_ID_MISMATCH, NO_FIELDS },
	{ "multipart file name mismatch behind a raw Windows path", MP, NULL,
	    MP_IDS FILEPART("C:\\keys\\AuthKey_ZZZZZ99999.p8") PEM "\r\n" END,
	    0, { NULL }, P8V_ERR_KEY_ID_MISMATCH, NO_FIELDS },
	{ "multipart file name mismatch behind a path", MP, NULL,
	    MP_IDS FILEPART("/home/me/AuthKey_ZZZZZ99999.p8") PEM "\r\n" END,
	    0, { NULL }, P8V_ERR_KEY_ID_MISMATCH, NO_FIELDS },
	{ "multipart file name mismatch, key_id last", MP, NULL,
	    FILEPART("AuthKey_ZZZZZ99999.p8") PEM "\r\n" PART("team_id") TID
	    "\r\n" PART("key_id") KID "\r\n" END, 0, { NULL },
	    P8V_ERR_KEY_ID_MISMATCH, NO_FIELDS },
	{ "multipart copy-suffixed file name not compared", MP, NULL,
	    MP_IDS FILEPART("AuthKey_ZZZZZ99999 (1).p8") PEM "\r\n" END, 0,
	    { NULL }, 0, NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "multipart empty file part", MP, NULL,
	    MP_IDS FILEPART("") "\r\n" END, 0, { NULL },
	    P8V_ERR_MISSING_FIELD, NO_FIELDS },
	{ "multipart missing team_id", MP, NULL,
	    PART("key_id") KID "\r\n" FILEPART("x") PEM "\r\n" END, 0,
	    { NULL }, P8V_ERR_MISSING_FIELD, NO_FIELDS },
	{ "multipart no parts", MP, NULL, END, 0, { NULL },
	    P8V_ERR_MISSING_FIELD, NO_FIELDS },
	{ "multipart key_id twice", MP, NULL,
	    MP_IDS PART("key_id") KID "\r\n" FILEPART("x") PEM "\r\n" END, 0,
	    { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart p8 twice", MP, NULL,
	    MP_IDS FILEPART("x") PEM "\r\n" FILEPART("y") PEM "\r\n" END, 0,
	    { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart unknown part", MP, NULL,
	    MP_IDS FILEPART("x") PEM "\r\n" PART("csrf") "t\r\n" END, 0,
	    { NULL }, P8V_ERR_UNKNOWN_FIELD, NO_FIELDS },
	{ "multipart activate yes", MP, NULL,
	    MP_IDS FILEPART("x") PEM "\r\n" PART("activate") "yes\r\n" END, 0,
	    { NULL }, P8V_ERR_BAD_FIELD, NO_FIELDS },
	{ "multipart service unknown", MP, NULL,
	    MP_IDS FILEPART("x") PEM "\r\n" PART("services") "apns,,maps\r\n"
	    END, 0, { NULL }, P8V_ERR_BAD_FIELD, NO_FIELDS },
	{ "multipart service twice across parts", MP, NULL,
	    MP_IDS FILEPART("x") PEM "\r\n" PART("services") "apns\r\n"
	    PART("services") "apns\r\n" END, 0, { NULL }, P8V_ERR_BAD_FIELD,
	    NO_FIELDS },
	{ "multipart environment unknown", MP, NULL,
	    MP_IDS FILEPART("x") PEM "\r\n" PART("environment") "prod\r\n" END,
	    0, { NULL }, P8V_ERR_BAD_FIELD, NO_FIELDS },
	{ "multipart NUL in key_id", MP, NULL,
	    PART("key_id") "ABC\0DE12345\r\n" PART("team_id") TID "\r\n"
	    FILEPART("x") PEM "\r\n" END,
	    sizeof(PART("key_id") "ABC\0DE12345\r\n" PART("team_id") TID "\r\n"
	    FILEPART("x") PEM "\r\n" END) - 1, { NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "multipart no boundary parameter", "multipart/form-data", NULL,
	    MP_IDS END, 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart boundary too long", "multipart/form-data; boundary="
	    "12345678901234567890123456789012345678901234567890123456789012345"
	    "678901", NULL, MP_IDS END, 0, { NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "multipart wrong boundary", "multipart/form-data; boundary=AbC",
	    NULL, MP_IDS END, 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart truncated", MP, NULL, MP_IDS FILEPART("x") PEM, 0,
	    { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart no close delimiter", MP, NULL,
	    MP_IDS FILEPART("x") PEM "\r\n--XyZ", 0, { NULL },
	    P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart bare LF", MP, NULL,
	    "--XyZ\nContent-Disposition: form-data; name=\"key_id\"\n\n" KID
	    "\n--XyZ--\n", 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart part without disposition", MP, NULL,
	    "--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n" END, 0,
	    { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart part without name", MP, NULL,
	    "--XyZ\r\nContent-Disposition: form-data\r\n\r\nx\r\n" END, 0,
	    { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart attachment part", MP, NULL,
	    "--XyZ\r\nContent-Disposition: attachment; name=\"p8\"\r\n\r\nx"
	    "\r\n" END, 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart base64 part", MP, NULL,
	    MP_IDS "--XyZ\r\nContent-Disposition: form-data; name=\"p8\"\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\nLS0t\r\n" END, 0,
	    { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart filename*", MP, NULL,
	    MP_IDS "--XyZ\r\nContent-Disposition: form-data; name=\"p8\"; "
	    "filename*=UTF-8''AuthKey_ZZZZZ99999.p8\r\n\r\n" PEM "\r\n" END,
	    0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart folded header", MP, NULL,
	    "--XyZ\r\nContent-Disposition: form-data;\r\n name=\"key_id\"\r\n"
	    "\r\n" KID "\r\n" END, 0, { NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "multipart unterminated quoted name", MP, NULL,
	    "--XyZ\r\nContent-Disposition: form-data; name=\"key_id\r\n\r\n"
	    KID "\r\n" END, 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart two dispositions", MP, NULL,
	    "--XyZ\r\nContent-Disposition: form-data; name=\"key_id\"\r\n"
	    "Content-Disposition: form-data; name=\"p8\"\r\n\r\n" KID "\r\n"
	    END, 0, { NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart too many headers", MP, NULL,
	    "--XyZ\r\nContent-Disposition: form-data; name=\"key_id\"\r\n"
	    "A: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\nA: 1\r\n"
	    "\r\n" KID "\r\n" END, 0, { NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "multipart fields in the query", MP, NULL,
	    MP_IDS FILEPART("x") PEM "\r\n" END, 0, { "activate", "false",
	    NULL }, P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "multipart empty body", MP, NULL, "", 0, { NULL },
	    P8V_ERR_BAD_REQUEST, NO_FIELDS },
	/* -- raw PEM --------------------------------------------------- */
	{ "raw with ids", RAW, NULL, PEM, 0,
	    { "key_id", KID, "team_id", TID, NULL }, 0, NULL, KEY_ENV_BOTH, 0,
	    0, 0 },
	{ "raw pkcs8 every field", "application/PKCS8; charset=us-ascii", NULL,
	    PEM, 0, { "key_id", KID, "team_id", TID, "environment", "both",
	    "services", " apns , weatherkit", "topics", "com.a", NULL }, 0,
	    NULL, KEY_ENV_BOTH, KEY_SERVICE_APNS | KEY_SERVICE_WEATHERKIT, 1,
	    0 },
	{ "raw activate 0", RAW, NULL, PEM, 0,
	    { "key_id", KID, "team_id", TID, "activate", "0", NULL }, 0, NULL,
	    KEY_ENV_BOTH, 0, 0, 1 },
	{ "raw missing key_id", RAW, NULL, PEM, 0, { "team_id", TID, NULL },
	    P8V_ERR_MISSING_FIELD, NO_FIELDS },
	{ "raw missing team_id", RAW, NULL, PEM, 0, { "key_id", KID, NULL },
	    P8V_ERR_MISSING_FIELD, NO_FIELDS },
	{ "raw empty body", RAW, NULL, "", 0,
	    { "key_id", KID, "team_id", TID, NULL }, P8V_ERR_MISSING_FIELD,
	    NO_FIELDS },
	{ "raw disposition matches", RAW, "attachment; filename=\"AuthKey_"
	    KID ".p8\"", PEM, 0, { "key_id", KID, "team_id", TID, NULL }, 0,
	    NULL, KEY_ENV_BOTH, 0, 0, 0 },
	{ "raw disposition mismatch", RAW, "attachment; filename="
	    "AuthKey_ZZZZZ99999.p8", PEM, 0,
	    { "key_id", KID, "team_id", TID, NULL }, P8V_ERR_KEY_ID_MISMATCH,
	    NO_FIELDS },
	{ "raw filename query mismatch", RAW, NULL, PEM, 0,
	    { "key_id", KID, "team_id", TID, "filename",
	    "AuthKey_ZZZZZ99999.p8", NULL }, P8V_ERR_KEY_ID_MISMATCH,
	    NO_FIELDS },
	{ "raw two file names disagree", RAW, "inline; filename=AuthKey_"
	    "ZZZZZ99999.p8", PEM, 0, { "key_id", "ZZZZZ99999", "team_id", TID,
	    "filename", "AuthKey_YYYYY99999.p8", NULL },
	    P8V_ERR_KEY_ID_MISMATCH, NO_FIELDS },
	{ "raw malformed disposition", RAW, "attachment; filename=", PEM, 0,
	    { "key_id", KID, "team_id", TID, NULL }, P8V_ERR_BAD_REQUEST,
	    NO_FIELDS },
	{ "raw disposition filename*", RAW, "attachment; filename*=UTF-8''x",
	    PEM, 0, { "key_id", KID, "team_id", TID, NULL },
	    P8V_ERR_BAD_REQUEST, NO_FIELDS },
	{ "raw services unknown", RAW, NULL, PEM, 0,
	    { "key_id", KID, "team_id", TID, "services", "apns,fcm", NULL },
	    P8V_ERR_BAD_FIELD, NO_FIELDS },
	{ "raw activate maybe", RAW, NULL, PEM, 0,
	    { "key_id", KID, "team_id", TID, "activate", "maybe", NULL },
	    P8V_ERR_BAD_FIELD, NO_FIELDS },
	/* 401 topics (KEY_RECORD_MAX_TOPICS + 1), 20 a line. */
	{ "raw too many topics", RAW, NULL, PEM, 0,
	    { "key_id", KID, "team_id", TID, "topics",
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,"
	    "a", NULL }, P8V_ERR_BAD_FIELD, NO_FIELDS },
};

static const char *
query_get(void *arg, const char *name)
{
	const char *const *q = arg;
	size_t i;

	for (i = 0; i + 1 < QMAX && q[i] != NULL; i += 2)
		if (strcmp(q[i], name) == 0)
			return q[i + 1];
	return NULL;
}

static void
run_case(const struct parse_case *c)
{
	struct upload_fields f;
	const char *p8 = c->p8 != NULL ? c->p8 : PEM;
	size_t len = c->body_len != 0 ? c->body_len : strlen(c->body);
	int r;

	r = upload_parse(c->ctype, c->disposition, (const uint8_t *)c->body,
	    len, query_get, (void *)c->query, &f);
	CHECKF(r == c->want, "%s: got %s, want %s", c->what, p8v_errname(r),
	    p8v_errname(c->want));
	if (r != 0) {
		/* Nothing but the message is left, and the message is set. */
		CHECKF(f.key_id == NULL && f.team_id == NULL && f.p8 == NULL &&
		    f.topics == NULL, "%s: fields left after failure", c->what);
		CHECKF(f.detail[0] != '\0' || r == P8V_ERR_ALLOC ||
		    r == P8V_ERR_SECMEM, "%s: no detail", c->what);
		upload_fields_finish(&f);
		return;
	}
	CHECKF(f.detail[0] == '\0', "%s: detail on success", c->what);
	CHECKF(f.key_id != NULL && strcmp(f.key_id, c->query[0] != NULL &&
	    strcmp(c->query[0], "key_id") == 0 ? c->query[1] : KID) == 0,
	    "%s: key_id", c->what);
	CHECKF(f.team_id != NULL && strcmp(f.team_id, TID) == 0,
	    "%s: team_id", c->what);
	CHECKF(f.p8 != NULL && f.p8_len == strlen(p8) &&
	    memcmp(f.p8, p8, f.p8_len) == 0, "%s: p8 (%zu bytes, want %zu)",
	    c->what, f.p8_len, strlen(p8));
	CHECKF(f.environment == c->env, "%s: environment %d", c->what,
	    (int)f.environment);
	CHECKF(f.services == (c->services != 0 ? c->services :
	    KEY_SERVICE_APNS), "%s: services 0x%x", c->what, f.services);
	CHECKF(f.n_topics == c->n_topics, "%s: %zu topics", c->what,
	    f.n_topics);
	CHECKF(f.activate == !c->inactive, "%s: activate %d", c->what,
	    f.activate);
	upload_fields_finish(&f);
	CHECK(f.p8 == NULL && f.key_id == NULL);
}

/* The "check" field (check with Apple first): every form, its refusals. */
static void
check_check_field(void)
{
	static const char *const q_true[QMAX] = { "key_id", KID, "team_id",
	    TID, "check", "true", NULL };
	static const char *const q_zero[QMAX] = { "key_id", KID, "team_id",
	    TID, "check", "0", NULL };
	static const char *const q_bad[QMAX] = { "key_id", KID, "team_id",
	    TID, "check", "maybe", NULL };
	static const char *const q_json[QMAX] = { "check", "true", NULL };
	static const char *const none[QMAX] = { NULL };
	static const char json_true[] = "{\"key_id\":\"" KID "\",\"team_id\""
	    ":\"" TID "\",\"p8\":\"" PEM_JSON "\",\"check\":true}";
	static const char json_str[] = "{\"key_id\":\"" KID "\",\"team_id\""
	    ":\"" TID "\",\"p8\":\"" PEM_JSON "\",\"check\":\"true\"}";
	static const char json_none[] = "{\"key_id\":\"" KID "\",\"team_id\""
	    ":\"" TID "\",\"p8\":\"" PEM_JSON "\"}";
	struct upload_fields f;

	CHECK_OK(upload_parse(RAW, NULL, (const uint8_t *)PEM, strlen(PEM),
	    query_get, (void *)q_true, &f));
	CHECK_INT(f.check, 1);
	upload_fields_finish(&f);
	CHECK_OK(upload_parse(RAW, NULL, (const uint8_t *)PEM, strlen(PEM),
	    query_get, (void *)q_zero, &f));
	CHECK_INT(f.check, 0);
	upload_fields_finish(&f);
	CHECK_ERR(upload_parse(RAW, NULL, (const uint8_t *)PEM, strlen(PEM),
	    query_get, (void *)q_bad, &f), P8V_ERR_BAD_FIELD);
	upload_fields_finish(&f);
	CHECK_OK(upload_parse(JSON, NULL, (const uint8_t *)json_true,
	    strlen(json_true), query_get, (void *)none, &f));
	CHECK_INT(f.check, 1);
	upload_fields_finish(&f);
	CHECK_OK(upload_parse(JSON, NULL, (const uint8_t *)json_none,
	    strlen(json_none), query_get, (void *)none, &f));
	CHECK_INT(f.check, 0);
	upload_fields_finish(&f);
	CHECK_ERR(upload_parse(JSON, NULL, (const uint8_t *)json_str,
	    strlen(json_str), query_get, (void *)none, &f),
	    P8V_ERR_BAD_REQUEST);
	upload_fields_finish(&f);
	/* A JSON upload's fields belong in its body. */
	CHECK_ERR(upload_parse(JSON, NULL, (const uint8_t *)json_none,
	    strlen(json_none), query_get, (void *)q_json, &f),
	    P8V_ERR_BAD_REQUEST);
	upload_fields_finish(&f);
}

/* Topics come out in order, split and trimmed. */
static void
check_topics(void)
{
	static const char *const q[QMAX] = { "key_id", KID, "team_id", TID,
	    "topics", "com.a, com.b.voip ,x", NULL };
	struct upload_fields f;

	CHECK_OK(upload_parse(RAW, NULL, (const uint8_t *)PEM, strlen(PEM),
	    query_get, (void *)q, &f));
	REQUIRE(f.n_topics == 3);
	CHECK_STR(f.topics[0], "com.a");
	CHECK_STR(f.topics[1], "com.b.voip");
	CHECK_STR(f.topics[2], "x");
	upload_fields_finish(&f);
}

/* Every prefix of a valid body of each form parses or fails cleanly (no
 * crash, no leak under ASan, never success for a cut JSON or multipart). */
static void
check_prefixes(void)
{
	static const char json[] = "{\"key_id\":\"" KID "\",\"team_id\":\""
	    TID "\",\"p8\":\"" PEM_JSON "\",\"topics\":[\"a\",{\"b\":[1]}]}";
	static const char mp[] = MP_IDS FILEPART("AuthKey_" KID ".p8") PEM
	    "\r\n" END;
	static const char *const none[QMAX] = { NULL };
	struct upload_fields f;
	size_t n;
	int r;

	for (n = 0; n < sizeof(json) - 1; n++) {
		r = upload_parse(JSON, NULL, (const uint8_t *)json, n,
		    query_get, (void *)none, &f);
		CHECKF(r != 0, "json prefix %zu accepted", n);
		upload_fields_finish(&f);
	}
	/* The whole document is refused too: topics holds an object. */
	CHECK_ERR(upload_parse(JSON, NULL, (const uint8_t *)json,
	    sizeof(json) - 1, query_get, (void *)none, &f),
	    P8V_ERR_BAD_REQUEST);
	upload_fields_finish(&f);
	for (n = 0; n < sizeof(mp) - 1; n++) {
		r = upload_parse(MP, NULL, (const uint8_t *)mp, n, query_get,
		    (void *)none, &f);
		/* Cut after "--XyZ--" the body is still complete. */
		CHECKF(r != 0 || n >= sizeof(mp) - 3, "multipart prefix %zu "
		    "accepted", n);
		upload_fields_finish(&f);
	}
}

/* Deterministic xorshift64, so that a failure reproduces. */
static uint64_t
next_random(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

/*
 * Mutate valid bodies of each form at random (flip, insert, delete and
 * duplicate bytes) and parse them: a smoke fuzz under ASan/UBSan until a
 * libFuzzer target exists. Whatever the outcome, the result must be
 * consistent: on success every required field is there, on failure none.
 */
#define MUTATIONS_PER_FORM 20000
#define MUTATED_MAX 2048

static void
check_mutations(void)
{
	static const struct {
		const char *ctype;
		const char *body;
		int raw;                /* fields in the query */
	} seeds[] = {
		{ JSON, "{\"key_id\":\"" KID "\",\"team_id\":\"" TID "\","
		    "\"p8\":\"" PEM_JSON "\",\"topics\":[\"a\"],\"services\":"
		    "[\"apns\"],\"environment\":\"both\",\"activate\":true}", 0 },
		{ MP, MP_IDS FILEPART("AuthKey_" KID ".p8") PEM "\r\n"
		    PART("services") "apns,maps\r\n" END, 0 },
		{ RAW, PEM, 1 },
	};
	static const char *const q[QMAX] = { "key_id", KID, "team_id", TID,
	    "services", "apns", NULL };
	static const char *const none[QMAX] = { NULL };
	uint8_t buf[MUTATED_MAX];
	struct upload_fields f;
	uint64_t rnd = 0x9e3779b97f4a7c15u, x;
	size_t s, i, k, n, pos;
	unsigned long ok = 0;
	int r;

	for (s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++) {
		for (i = 0; i < MUTATIONS_PER_FORM; i++) {
			n = strlen(seeds[s].body);
			memcpy(buf, seeds[s].body, n);
			for (k = 1 + next_random(&rnd) % 4; k > 0; k--) {
				x = next_random(&rnd);
				pos = n > 0 ? (size_t)(x >> 8) % n : 0;
				switch (x % 4) {
				case 0:         /* flip a byte */
					if (n > 0)
						buf[pos] ^= (uint8_t)(1u <<
						    (x >> 40) % 8);
					break;
				case 1:         /* insert a byte */
					if (n < MUTATED_MAX) {
						memmove(buf + pos + 1,
						    buf + pos, n - pos);
						buf[pos] = (uint8_t)(x >> 48);
						n++;
					}
					break;
				case 2:         /* delete a byte */
					if (n > 0) {
						memmove(buf + pos,
						    buf + pos + 1,
						    n - pos - 1);
						n--;
					}
					break;
				default:        /* truncate */
					n = pos;
					break;
				}
			}
			r = upload_parse(seeds[s].ctype, NULL, buf, n,
			    query_get, (void *)(seeds[s].raw ? q : none), &f);
			if (r == 0) {
				ok++;
				CHECKF(f.key_id != NULL && f.team_id != NULL &&
				    f.p8 != NULL && f.services != 0,
				    "form %zu mutation %zu", s, i);
			} else {
				CHECKF(f.key_id == NULL && f.p8 == NULL &&
				    f.topics == NULL, "form %zu mutation %zu",
				    s, i);
			}
			upload_fields_finish(&f);
		}
	}
	/* Some mutations (inside the PEM, say) still parse: the loop did
	 * reach the end of the parsers, not only their first check. */
	CHECKF(ok > 0, "no mutated body parsed");
}

int
main(void)
{
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);
	check_topics();
	check_check_field();
	check_prefixes();
	check_mutations();
	CHECK_ERR(upload_parse(JSON, NULL, NULL, 1, query_get, NULL, NULL),
	    P8V_ERR_INVALID_ARGUMENT);
	return check_finish();
}
