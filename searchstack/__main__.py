from searchstack.cli import app

app()
