"""The Streamlit app: a thin layer over `ofa_engine` (entry point: app/streamlit_app.py)."""
