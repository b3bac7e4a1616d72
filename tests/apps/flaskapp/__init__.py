"""A small Flask app served by the test suite: ``ferrocorn flaskapp:app``.

Routes: ``/api/hello`` (JSON), ``/api/echo`` (JSON POST echoed back),
``/form`` (form POST), ``/stream`` (a streamed response), ``/upload``
(a multipart file upload, answered with the file's size and SHA-256).
"""

import hashlib
import time

from flask import Flask, Response, jsonify, request, stream_with_context


def create_app():
    app = Flask(__name__)

    @app.get("/api/hello")
    def hello():
        return jsonify(message=f"hello {request.args.get('name', 'world')}")

    @app.post("/api/echo")
    def echo_json():
        return jsonify(received=request.get_json(), content_type=request.content_type)

    @app.route("/form", methods=["GET", "POST"])
    def form():
        if request.method == "GET":
            return '<form method="post"><input name="name"><input name="colour"><button type="submit">Send</button></form>'
        return jsonify(fields=request.form.to_dict(flat=False))

    @app.get("/stream")
    def stream():
        n = request.args.get("n", 5, type=int)
        delay = request.args.get("delay", 0.0, type=float)

        @stream_with_context
        def generate():
            for i in range(n):
                if i and delay:
                    time.sleep(delay)
                yield f"line {i} for {request.path}\n"

        return Response(generate(), mimetype="text/plain")

    @app.post("/upload")
    def upload():
        f = request.files["file"]
        data = f.read()
        return jsonify(
            filename=f.filename,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            note=request.form.get("note"),
        )

    return app


app = create_app()
