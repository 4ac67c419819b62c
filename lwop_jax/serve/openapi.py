"""The service's OpenAPI 3.1 description, written out: Starlette does not derive one, and the service has
few enough endpoints that a static dict, checked by a test against the routes, stays true."""

from __future__ import annotations

from lwop_jax import __version__

_ERROR = {'$ref': '#/components/schemas/Error'}


def _error(description: str) -> dict:
    return {'description': description, 'content': {'application/json': {'schema': _ERROR}}}


def _json(description: str, schema: dict | None = None) -> dict:
    return {'description': description, 'content': {'application/json': {'schema': schema or {'type': 'object'}}}}


BUSY = _error('busy: every worker busy and the queue full (header Retry-After), or the service is shutting down')
UNAUTHORIZED = _error('missing or wrong API key (when the service has one)')
KEYED: list[dict[str, list[str]]] = [{'apiKey': []}, {'bearer': []}]

OPENAPI = {
    'openapi': '3.1.0',
    'info': {
        'title': 'lwop serve',
        'version': __version__,
        'description': 'Multi-person 2D pose estimation (Lightweight OpenPose). Every error is a JSON body '
        '{"error": "<one line>"} with its status code.',
    },
    'paths': {
        '/v1/poses': {
            'post': {
                'summary': 'People in one image',
                'description': 'The image as the raw body (Content-Type image/jpeg, image/png, image/bmp or '
                'image/webp) or as the multipart/form-data field "image". The answer is the per-image record '
                'of `lwop infer --json` plus timing_ms.',
                'security': KEYED,
                'parameters': [
                    {
                        'name': 'height_size',
                        'in': 'query',
                        'required': False,
                        'schema': {'type': 'integer', 'minimum': 32, 'maximum': 1024},
                        'description': 'network input height (default: the service setting)',
                    }
                ],
                'requestBody': {
                    'required': True,
                    'content': {
                        'image/*': {'schema': {'type': 'string', 'format': 'binary'}},
                        'multipart/form-data': {
                            'schema': {
                                'type': 'object',
                                'properties': {'image': {'type': 'string', 'format': 'binary'}},
                                'required': ['image'],
                            }
                        },
                    },
                },
                'responses': {
                    '200': _json('the people found', {'$ref': '#/components/schemas/ImageRecord'}),
                    '400': _error('empty, truncated, damaged, not an image, too small, or a bad height_size'),
                    '401': UNAUTHORIZED,
                    '408': _error('the body took too long to arrive'),
                    '413': _error('too many bytes, pixels, or network input pixels'),
                    '415': _error('a content type the service does not take'),
                    '503': BUSY,
                },
            }
        },
        '/v1/stream': {
            'get': {
                'summary': 'WebSocket: binary JPEG frames in, one JSON record per frame out, in order',
                'description': 'Upgrade to a WebSocket. Each binary message is one frame; each answer is the '
                'frame\'s record ({"index", "people" with track_id, ...} or {"index", "status", "error"}). '
                'Tracking and smoothing run per connection (query track=1, smooth=1 by default; height_size). '
                'With a key set, send it as a header or as a first text message {"api_key": "..."}.',
                'security': KEYED,
                'responses': {'101': {'description': 'switching to the WebSocket protocol'}, '401': UNAUTHORIZED},
            }
        },
        '/v1/model': {
            'get': {
                'summary': 'The model: schema, precision, backend, input height, lwop_jax version',
                'security': KEYED,
                'responses': {'200': _json('the model'), '401': UNAUTHORIZED},
            }
        },
        '/healthz': {
            'get': {
                'summary': 'Liveness',
                'responses': {'200': _json('alive'), '503': BUSY},
            }
        },
        '/metrics': {
            'get': {
                'summary': 'Prometheus metrics',
                'security': KEYED,
                'responses': {'200': {'description': 'text exposition format'}, '401': UNAUTHORIZED},
            }
        },
        '/': {'get': {'summary': 'The live browser page', 'responses': {'200': {'description': 'HTML'}}}},
        '/openapi.json': {'get': {'summary': 'This description', 'responses': {'200': _json('OpenAPI 3.1')}}},
    },
    'components': {
        'schemas': {
            'Error': {
                'type': 'object',
                'properties': {'error': {'type': 'string', 'description': 'what is wrong, in one line'}},
                'required': ['error'],
            },
            'ImageRecord': {
                'type': 'object',
                'properties': {
                    'keypoint_names': {'type': 'array', 'items': {'type': 'string'}},
                    'keypoint_schema': {'type': 'string'},
                    'precision': {'type': 'string'},
                    'backend': {'type': 'string'},
                    'height_size': {'type': 'integer'},
                    'height': {'type': 'integer'},
                    'width': {'type': 'integer'},
                    'people': {
                        'type': 'array',
                        'items': {
                            'type': 'object',
                            'description': 'keypoints [[x, y, score]] in image pixels (missing: [-1, -1, 0]), '
                            'score, num_keypoints, bbox [x, y, w, h], track_id',
                        },
                    },
                    'timing_ms': {
                        'type': 'object',
                        'description': 'decode, preprocess, network, postprocess (milliseconds)',
                    },
                },
            },
        },
        'securitySchemes': {
            'apiKey': {'type': 'apiKey', 'in': 'header', 'name': 'X-API-Key'},
            'bearer': {'type': 'http', 'scheme': 'bearer'},
        },
    },
}
