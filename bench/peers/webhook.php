<?php
// The shared-hosting default: the same contract in a few lines of PHP (hash_hmac + hash_equals), under php-fpm.
header('Content-Type: application/json');
$method = $_SERVER['REQUEST_METHOD'];
if ($method !== 'POST') {
    http_response_code(405);
    header('Allow: POST');
    echo json_encode(['reason' => "Method $method is not allowed on this route"]);
    exit;
}
$signature = $_SERVER['HTTP_X_SIGNATURE'] ?? '';
if (!preg_match('/^[0-9a-fA-F]{64}$/', $signature)) {
    http_response_code(400);
    echo '{"reason":"missing or malformed x-signature"}';
    exit;
}
$expected = hash_hmac('sha256', file_get_contents('php://input'), $_SERVER['API_SECRET_KEY']);
if (!hash_equals($expected, strtolower($signature))) {
    http_response_code(400);
    echo '{"reason":"x-signature does not match the body"}';
    exit;
}
echo '{"verified":true}';
