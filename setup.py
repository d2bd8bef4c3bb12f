from setuptools import find_packages, setup

# Every dependency is pinned to a range this project is tested with. The Dagster family is
# released in lockstep and pinned exactly: an unpinned dagster-aws resolves to an ancient 0.11.x.
DAGSTER = ["dagster==1.13.27", "dagster-webserver==1.13.27", "dagster-graphql==1.13.27", "dagster-aws==0.29.27"]

setup(
    name="ddb_assets",
    version="0.1.0",
    description="DynamoDB point-in-time exports turned into an exact, typed Apache Iceberg lake, as Dagster assets.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(exclude=["ddb_assets_tests", "ddb_assets_tests.*"]),
    package_data={"ddb_assets": ["py.typed", "query/reports/*.sql", "config/*.yaml"]},
    install_requires=[
        *DAGSTER,
        "boto3>=1.40,<2",
        "pyarrow>=20,<27",
        # The lake's commit layer and catalogs (SQLite embedded, Glue on AWS). 0.12 has the commit
        # retries and snapshot validation we rely on; a decimal scale change it would accept is
        # refused by our planner (docs/schema_rules.md).
        "pyiceberg[sql-sqlite,pyarrow,glue]>=0.12,<0.13",
        "sqlalchemy>=2,<3",
        "moto[server]>=5.2.5,<5.3",
        "duckdb>=1.3,<3",
        "amazon-ion>=0.13,<0.16",
        "typer>=0.15,<0.30",
        "rich>=13,<16",
        "orjson>=3.10,<4",
        "isal>=1.7,<2",
        # arrow-rs's JSON reader: the default parse path, tested with 0.9.1 (exports/json_reader.py).
        # 0.x minors may change its Python API, hence the ceiling.
        "arro3-io>=0.9.1,<0.10",
        "pyyaml>=6,<7",
        "pydantic>=2.7,<3",
    ],
    extras_require={
        "dev": [
            "pytest>=8,<10",
            "pytest-timeout>=2.3,<3",
            "hypothesis>=6.100,<7",
            "playwright>=1.50,<2",
        ],
        # The spark runner (convert --runner spark): spark-submit and pyspark; Spark needs a Java 17+ runtime.
        # Its sql extra brings pandas, which pyspark's mapInArrow (the key check's round) insists on;
        # pandas 3 is newer than pyspark 4.0 is tested with.
        "spark": ["pyspark[sql]>=3.5,<4.1", "pandas>=2,<3"],
    },
    entry_points={"console_scripts": ["ddb-assets=ddb_assets.cli:main"]},
)
