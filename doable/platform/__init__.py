"""What every layer above the domain uses: settings, structured logs, metrics, token verification, the
acting user's context, the names shared with the chart (topology) and CPU offloading."""
