from ignitevm.cli.main import main

main()
